"""The extract job's pure pieces: inputs and ids, commits and orphans, shape checks."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from core import config
from core.features import ExtractorConfig
from core.io.checkpoint import file_sha256
from core.pipeline import driver, inputs, stages
from core.pipeline.config import ExtractConfig, check_shapes


def test_ids_keep_safe_names_and_encode_the_rest_reversibly():
    for name in ("v_abcdefghij_", "v_-ab_cd-EFg", "clip.v2", "x" * 300):
        assert inputs.encode_id(name) == name  # ActivityNet ids survive as they are
    for name in ("a b", ".hidden", "ünï", "a~b", "cam/1", "a_b", "a%20b"):
        vid = inputs.encode_id(name)
        assert inputs.decode_id(vid) == name
        assert all(c.isascii() and (c.isalnum() or c in "_.-~") for c in vid) and vid[0] != "."
    assert len({inputs.encode_id(n) for n in ("a b", "a_b", "a~20b", "a%20b")}) == 4


def test_an_id_depends_on_the_video_alone(tmp_path):
    for name in ("v_abcdefghij_.mp4", "a b.mp4", "ünï.webm"):
        (tmp_path / name).write_bytes(b"")
    before = {v.uri: v.video_id for v in inputs.list_inputs(str(tmp_path))}
    assert set(before.values()) == {"v_abcdefghij_", "a~20b", "~C3~BCn~C3~AF"}
    (tmp_path / "0.mp4").write_bytes(b"")
    after = {v.uri: v.video_id for v in inputs.list_inputs(str(tmp_path))}
    assert {u: after[u] for u in before} == before and len(after) == 4


def test_two_inputs_with_one_id_are_an_error_naming_both(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "clip.mp4").write_bytes(b"")
    with pytest.raises(inputs.InputError, match=r"'clip'.*a/clip\.mp4 and .*b/clip\.mp4"):
        inputs.list_inputs(str(tmp_path))


def test_manifest_with_relative_uris_and_given_ids(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "a.mp4").write_bytes(b"")
    (tmp_path / "m.csv").write_text("uri,video_id\nv/a.mp4,cam/1\n")
    (found,) = inputs.list_inputs(str(tmp_path / "m.csv"))
    assert found == inputs.VideoInput("cam~2F1", str(tmp_path / "v" / "a.mp4"))


def test_bad_inputs_are_input_errors(tmp_path):
    with pytest.raises(inputs.InputError, match="not found"):
        inputs.list_inputs(str(tmp_path / "nope"))
    with pytest.raises(inputs.InputError, match="no videos"):
        inputs.list_inputs(str(tmp_path))
    (tmp_path / "m.csv").write_text("path\nx.mp4\n")
    with pytest.raises(inputs.InputError, match="no 'uri' column"):
        inputs.list_inputs(str(tmp_path / "m.csv"))


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


def test_fingerprint_ignores_parallelism_not_what_changes_results():
    a, b = _cfg(), _cfg()
    b.extractor.num_actors = 12
    b.localizer.batch_size = 512
    b.localizer.dtype = "bfloat16"  # on the CPU (num_gpus 0) it runs float32 anyway
    names = ["walk", "run"]
    fp = driver.fingerprint(a, "random", names)
    assert fp == driver.fingerprint(b, "random", names)
    assert fp != driver.fingerprint(a, "abc", names)
    assert fp != driver.fingerprint(a, "random", ["run", "walk"])
    assert fp != driver.fingerprint(a, "random", names, extractor_sha256="0" * 64)
    b.localizer.num_gpus = 0.1
    assert fp != driver.fingerprint(b, "random", names)


def test_checkpoints_are_fingerprinted_by_content(tmp_path):
    (tmp_path / "a.pth").write_bytes(b"weights")
    (tmp_path / "b.pth").write_bytes(b"weights")
    (tmp_path / "c.pth").write_bytes(b"other weights")
    a, b, c = (file_sha256(str(tmp_path / f"{n}.pth")) for n in "abc")
    assert a == b != c and file_sha256(None) == "random"


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


class _FlakyExtractor:
    """Runs out of GPU memory ``ooms`` times, then works; or fails another way."""

    def __init__(self, ooms: int, error: Exception | None = None) -> None:
        self.ooms, self.error, self.calls = ooms, error, 0

    def extract(self, clips):
        import torch

        self.calls += 1
        if self.error is not None:
            raise self.error
        if self.calls <= self.ooms:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return np.ones((len(clips), 2), np.float32)


def test_recognizer_out_of_memory_is_retried_other_failures_fail_the_job(monkeypatch):
    monkeypatch.setattr(stages.time, "sleep", lambda s: None)
    clips = np.zeros((3, 1, 4, 4, 3), np.uint8)
    flaky = _FlakyExtractor(ooms=2)
    assert stages._extract_retrying_oom(flaky, clips).shape == (3, 2) and flaky.calls == 3
    with pytest.raises(stages.RecognizerError, match="out of memory 3 times"):
        stages._extract_retrying_oom(_FlakyExtractor(ooms=5), clips)
    broken = _FlakyExtractor(0, ValueError("bad weights"))
    with pytest.raises(stages.RecognizerError, match="failed on 3 snippets"):
        stages._extract_retrying_oom(broken, clips)
    assert broken.calls == 1
