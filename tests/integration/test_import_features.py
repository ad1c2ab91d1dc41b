"""jobs.import_features on CSVs in MMAction2's csv_mean_100 layout, checked against MMAction2's
own loading transforms (LoadLocalizationFeature, GenerateLocalizationLabels)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import core  # noqa: F401  (upstream shims before mmaction)
from core.eval.annotations import load_annotations
from core.io import commits
from core.train import data
from jobs import import_features

C, T = 400, 100
CLASSES = {"Rock climbing": 0}
VIDEOS = {  # id: (duration_second, duration_frame, feature_frame, segments)
    "v_aaa": (211.53, 6337, 6336, [[30.03, 205.23]]),
    "v_bbb": (26.75, 647, 624, [[2.58, 24.91], [10.0, 30.0]]),  # an end past the features
    "v_ccc": (60.0, 1800, 1792, [[0.0, 12.5]]),  # annotated, but no CSV
}


@pytest.fixture(scope="module")
def ray_session():
    import ray

    yield
    ray.shutdown()


def write_csv(path, feats_TC: np.ndarray) -> None:
    header = ",".join(f"f{c}" for c in range(feats_TC.shape[1]))
    rows = [",".join(repr(float(v)) for v in row) for row in feats_TC]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("csv_import")
    csv_dir = root / "csv_mean_100"
    csv_dir.mkdir()
    rng = np.random.default_rng(0)
    feats = {}
    for vid in ("v_aaa", "v_bbb", "v_orphan"):  # v_orphan has no annotation
        feats[vid] = rng.random((T, C), dtype=np.float32)
        write_csv(csv_dir / f"{vid}.csv", feats[vid])
    anno = {
        vid: {"duration_second": s, "duration_frame": f, "feature_frame": ff, "fps": 30.0,
              "annotations": [{"segment": seg, "label": "Rock climbing"} for seg in segs]}
        for vid, (s, f, ff, segs) in VIDEOS.items()
    }  # fmt: skip
    anno_path = root / "anet_anno.json"
    anno_path.write_text(json.dumps(anno))
    return csv_dir, anno_path, feats


def mmaction_load(csv_path, info: dict) -> dict:
    from mmaction.datasets.transforms import GenerateLocalizationLabels, LoadLocalizationFeature

    results = {"feature_path": str(csv_path), **info}
    results = LoadLocalizationFeature().transform(results)
    return GenerateLocalizationLabels().transform(results)


def test_import_matches_mmaction_loading_and_resumes(ray_session, inputs, tmp_path):
    csv_dir, anno_path, feats = inputs
    out = str(tmp_path / "out")
    args = ["--csv-dir", str(csv_dir), "--annotations", str(anno_path), "--output", out,
            "--batch-size", "1", "--num-cpus", "2"]  # fmt: skip
    assert import_features.main(args) == 0
    table = commits.read_table(out, "features").sort_by("video_id")
    assert table.column("video_id").to_pylist() == ["v_aaa", "v_bbb"]
    assert set(table.column("C").to_pylist()) == {C} and set(table.column("T").to_pylist()) == {T}
    anno = json.loads(anno_path.read_text())
    for row in table.to_pylist():
        vid = row["video_id"]
        upstream = mmaction_load(csv_dir / f"{vid}.csv", anno[vid])
        feats_CT = np.asarray(row["features"], np.float32).reshape(C, T)
        np.testing.assert_array_equal(feats_CT, upstream["raw_feature"])
        np.testing.assert_array_equal(feats_CT, feats[vid].T)
        s, f, ff, _ = VIDEOS[vid]
        assert row["feature_span_s"] == pytest.approx(ff / f * s)
        assert (row["fps"], row["num_frames"]) == (30.0, f)
    # the training data's ground truth is MMAction2's gt_bbox
    index = data.read_feature_index(data.features_table_uri(out))
    gt, missing = data.match_ground_truth(load_annotations(str(anno_path)), index, CLASSES)
    assert missing == ["v_ccc"]
    for vid in ("v_aaa", "v_bbb"):
        upstream = mmaction_load(csv_dir / f"{vid}.csv", anno[vid])
        np.testing.assert_allclose(gt[vid][:, :2], upstream["gt_bbox"], rtol=1e-12)
    # a second run finds everything imported
    assert import_features.main(args) == 0
    assert commits.read_table(out, "features").num_rows == 2


def test_no_csv_exits_2(ray_session, inputs, tmp_path):
    _, anno_path, _ = inputs
    (tmp_path / "empty").mkdir()
    args = ["--csv-dir", str(tmp_path / "empty"), "--annotations", str(anno_path),
            "--output", str(tmp_path / "o")]  # fmt: skip
    assert import_features.main(args) == 2
