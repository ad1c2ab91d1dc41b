"""The extract job's pure pieces: inputs and ids, commits and orphans, shape checks."""

from __future__ import annotations

import pathlib

import pyarrow as pa
import pytest

from core import config, storage
from core.features import ExtractorConfig
from core.io import commits
from core.pipeline import driver, inputs
from core.pipeline.config import ExtractConfig, check_shapes


def test_safe_ids_are_path_safe_and_unique(tmp_path):
    for name in ("a b.mp4", "a_b.mp4", "../etc/passwd.mp4", ".hidden/x.mp4", "ünï.webm"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    found = inputs.list_inputs(str(tmp_path))
    ids = [v.video_id for v in found]
    assert len(ids) == len(set(ids))
    assert all(v and all(c.isalnum() or c in "_.-" for c in v) and v[0] != "." for v in ids)
    assert "a_b" in ids and "a_b-2" in ids
    assert inputs.safe_id("x" * 300) != inputs.safe_id("x" * 299 + "y")
    assert len(inputs.safe_id("x" * 300)) <= 200


def test_manifest_with_relative_uris_and_given_ids(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "a.mp4").write_bytes(b"")
    (tmp_path / "m.csv").write_text("uri,video_id\nv/a.mp4,cam/1\n")
    (found,) = inputs.list_inputs(str(tmp_path / "m.csv"))
    assert found == inputs.VideoInput("cam_1", str(tmp_path / "v" / "a.mp4"))


def test_bad_inputs_are_input_errors(tmp_path):
    with pytest.raises(inputs.InputError, match="not found"):
        inputs.list_inputs(str(tmp_path / "nope"))
    with pytest.raises(inputs.InputError, match="no videos"):
        inputs.list_inputs(str(tmp_path))
    (tmp_path / "m.csv").write_text("path\nx.mp4\n")
    with pytest.raises(inputs.InputError, match="no 'uri' column"):
        inputs.list_inputs(str(tmp_path / "m.csv"))


def test_commits_skip_done_videos_and_remove_orphans(tmp_path):
    out = str(tmp_path)
    table = pa.table({"video_id": ["a", "b"]})
    commits.commit_batch(out, "r1", "1" * 32, {"features": table}, ["a", "b"])
    orphan = commits.part_uri(out, "features", "r2", "2" * 32)
    storage.write_bytes(orphan, commits.parquet_bytes(table))
    assert commits.committed_video_ids(out) == {"a", "b"}
    assert commits.remove_orphans(out, ("features", "proposals")) == [orphan]
    assert commits.read_table(out, "features").num_rows == 2
    assert set(commits.read_table(out, "features").column("run_id").to_pylist()) == {"r1"}


REPO = pathlib.Path(__file__).resolve().parents[2]


def _cfg(**localizer_model) -> ExtractConfig:
    model = dict(feat_dim=400, temporal_dim=100) | localizer_model
    head = {"cls_head": {"num_classes": 400, "in_channels": 2048}}
    return ExtractConfig(extractor=ExtractorConfig(model=head), model=model)


def test_shape_check_names_the_mismatch():
    cfg = _cfg()
    check_shapes(cfg, cfg.model)
    with pytest.raises(config.ConfigError, match="makes 400-d features"):
        check_shapes(cfg, {"feat_dim": 2048, "temporal_dim": 100})
    with pytest.raises(config.ConfigError, match="temporal_dim=100"):
        check_shapes(cfg, {"feat_dim": 400, "temporal_dim": 32})


def test_fingerprint_ignores_parallelism_not_the_model():
    a, b = _cfg(), _cfg()
    b.extractor.num_actors = 12
    b.localizer.batch_size = 512
    assert driver.fingerprint(a, "random") == driver.fingerprint(b, "random")
    assert driver.fingerprint(a, "random") != driver.fingerprint(a, "abc")


def test_random_localizer_needs_a_class_count():
    cfg = _cfg(num_action_classes=None)
    with pytest.raises(config.ConfigError, match="pass --checkpoint or set model.num_action"):
        check_shapes(cfg, cfg.model)


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "extract").glob("*.py")), ids=str)
def test_repository_configs_load_and_agree(path):
    cfg, _ = config.load(str(path), ExtractConfig)
    check_shapes(cfg, cfg.model)
    assert cfg.extractor.model["type"].startswith("Recognizer")


def test_moved_and_invalid_keys_say_where(tmp_path):
    demo = str(REPO / "configs" / "extract" / "demo.py")
    with pytest.raises(config.ConfigError, match=r"'localizer\.model'; it moved to 'model"):
        config.load(demo, ExtractConfig, {"localizer.model": {"feat_dim": 3}})
    with pytest.raises(config.ConfigError, match=r"key 'sampling'.*crop_size 300 > short_side"):
        config.load(demo, ExtractConfig, {"sampling.crop_size": 300})
    with pytest.raises(config.ConfigError, match=r"key 'extractor'.*num_actors must be >= 1"):
        config.load(demo, ExtractConfig, {"extractor.num_actors": 0})
