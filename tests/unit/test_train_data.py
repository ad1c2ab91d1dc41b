"""core.train.data: splits, ground truth in the model's units, shards and batches."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pytest
import torch

from core import storage
from core.eval.annotations import VideoAnnotation, parse_annotations
from core.io import commits
from core.train import data, synthetic_features
from core.train.config import DataSection

pytestmark = pytest.mark.unit


def video(vid: str, segments, labels, duration=100.0, subset=None) -> VideoAnnotation:
    return VideoAnnotation(
        vid, duration, subset, np.asarray(segments, float).reshape(-1, 2), labels
    )


def test_split_by_subsets_and_by_hash():
    annos = {f"v{i}": video(f"v{i}", [[0, 1]], ["a"], subset="training") for i in range(8)}
    annos["w"] = video("w", [[0, 1]], ["a"], subset="validation")
    train, val = data.split_annotations(annos, DataSection())
    assert set(val) == {"w"} and len(train) == 8
    no_subsets = {f"v_{i}": video(f"v_{i}", [[0, 1]], ["a"]) for i in range(400)}
    train, val = data.split_annotations(no_subsets, DataSection(val_fraction=0.25))
    assert 70 < len(val) < 130 and not set(train) & set(val)
    # the split is the ids' alone: a subset of the videos splits the same way
    half = dict(list(no_subsets.items())[:200])
    _, val_half = data.split_annotations(half, DataSection(val_fraction=0.25))
    assert set(val_half) == set(val) & set(half)


def test_separate_val_annotations_win():
    annos = {v: video(v, [[0, 1]], ["a"]) for v in ("a", "b", "c")}
    train, val = data.split_annotations(annos, DataSection(), val_annos={"c": annos["c"]})
    assert set(train) == {"a", "b"} and set(val) == {"c"}


def test_ground_truth_normalised_by_features_duration_and_clipped():
    v = video("v_x", [[10, 30], [-5, 250]], ["b", "a"], duration=211.0)
    gt_G3 = data.normalized_ground_truth(v, 200.0, {"a": 0, "b": 1})
    np.testing.assert_allclose(gt_G3, [[0.05, 0.15, 1], [0.0, 1.0, 0]])


def test_match_resolves_v_prefix_and_reports_missing():
    annos = {"v_abc": video("v_abc", [[0, 50]], ["a"]), "v_zzz": video("v_zzz", [[0, 1]], ["a"])}
    index = pa.table({"video_id": ["abc", "other"], "feature_span_s": [100.0, 10.0]})
    gt, missing = data.match_ground_truth(annos, index, {"a": 0})
    assert list(gt) == ["abc"] and missing == ["v_zzz"]
    np.testing.assert_allclose(gt["abc"], [[0.0, 0.5, 0]])


def feature_rows(ids, C=3, T=4, seed=0):
    feats_NCT = np.random.default_rng(seed).standard_normal((len(ids), C, T)).astype(np.float32)
    return synthetic_features.features_table(ids, feats_NCT, np.full(len(ids), 50.0)), feats_NCT


def test_join_then_collect_restores_c_by_t_in_id_order():
    table, feats_NCT = feature_rows(["c", "a", "b"])
    gt = {"a": np.array([[0.1, 0.2, 1.0]]), "c": np.zeros((0, 3))}
    joined = data.join_ground_truth(table, gt)
    assert joined.column_names == ["video_id", "features", "feature_span_s", "gt_G3"]
    shard = data.collect_shard([joined.slice(1), joined.slice(0, 1)], C=3, T=4)
    assert shard.video_ids == ["a", "c"]
    np.testing.assert_array_equal(shard.feats_NCT[0], feats_NCT[1])  # "a" was row 1
    np.testing.assert_array_equal(shard.feats_NCT[1], feats_NCT[0])
    np.testing.assert_allclose(shard.gt[0], [[0.1, 0.2, 1.0]])
    assert shard.gt[1].shape == (0, 3) and shard.feats_NCT.flags.writeable


def test_epoch_batches_depend_on_seed_epoch_rank_only():
    a = data.epoch_batches(10, 3, 3, seed=1, epoch=2, rank=0)
    assert [len(b) for b in a] == [3, 3, 3] and len(set(np.concatenate(a))) == 9
    again = data.epoch_batches(10, 3, 3, seed=1, epoch=2, rank=0)
    assert all(np.array_equal(x, y) for x, y in zip(a, again, strict=True))
    for other in ((1, 3, 0), (2, 2, 0), (1, 2, 1)):
        b = data.epoch_batches(10, 3, 3, *other)
        assert not all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    with pytest.raises(ValueError):
        data.epoch_batches(5, 3, 2, 0, 0, 0)


def test_prepare_training_set_from_written_features(tmp_path):
    out = str(tmp_path / "feats")
    anno_uri = synthetic_features.write_synthetic(out, 12, C=5, T=8, num_classes=2, rows_per_file=5)
    ts = data.prepare_training_set(out, anno_uri, DataSection())
    assert (ts.C, ts.T) == (5, 8) and ts.class_names == ["action_0", "action_1"]
    assert ts.counts() == {"train": 9, "val": 3}
    assert set(ts.val_annotations) == set(ts.gt["val"])
    assert ts.features_uri.endswith("features")
    index = data.read_feature_index(ts.features_uri).to_pydict()
    durations = dict(zip(index["video_id"], index["feature_span_s"], strict=True))
    vid = sorted(ts.gt["train"])[0]
    with open(anno_uri) as f:
        annos = parse_annotations(json.load(f))
    seg = annos[vid].segments_N2[0]
    np.testing.assert_allclose(ts.gt["train"][vid][0, :2], seg / durations[vid])


def test_prepare_training_set_errors(tmp_path):
    out = str(tmp_path / "f")
    anno_uri = synthetic_features.write_synthetic(out, 6, C=2, T=4, num_classes=1)
    with pytest.raises(data.TrainDataError, match="not found"):
        data.prepare_training_set(str(tmp_path / "nothing"), anno_uri, DataSection())
    table, _ = feature_rows(["vid_000001"], C=2, T=4)
    # commits never publish a video twice: a copy made behind their back must still be caught
    storage.write_bytes(commits.part_uri(out, "features", "0" * 32), commits.parquet_bytes(table))
    with pytest.raises(data.TrainDataError, match="more than once"):
        data.prepare_training_set(out, anno_uri, DataSection())


def test_read_shards_equals_join_then_collect(tmp_path):
    """One pass over several files: each split's rows in id order, features on the device for
    the device splits, the same arrays as the table-wide join and sort."""
    out = str(tmp_path / "feats")
    anno_uri = synthetic_features.write_synthetic(out, 23, C=3, T=4, num_classes=2, rows_per_file=4)
    ts = data.prepare_training_set(out, anno_uri, DataSection())
    table = pads.dataset(ts.features_uri, format="parquet").to_table(
        columns=list(data.READ_COLUMNS)
    )
    train_ids = data.shard_ids(ts, data.TRAIN, 1, 2)  # every second id: files hold both splits
    shards = data.read_shards(ts, {data.TRAIN: train_ids, data.VAL: list(ts.gt[data.VAL])},
                              device="cpu", device_splits=[data.TRAIN])  # fmt: skip
    for split, ids in ((data.TRAIN, train_ids), (data.VAL, sorted(ts.gt[data.VAL]))):
        gt = {vid: ts.gt[split][vid] for vid in ids}
        expected = data.collect_shard([data.join_ground_truth(table, gt)], 3, 4)
        got = shards[split]
        assert got.video_ids == expected.video_ids == sorted(ids)
        np.testing.assert_array_equal(np.asarray(got.feats_NCT), expected.feats_NCT)
        np.testing.assert_array_equal(got.durations_N, expected.durations_N)
        assert all(np.array_equal(a, b) for a, b in zip(got.gt, expected.gt, strict=True))
    assert isinstance(shards[data.TRAIN].feats_NCT, torch.Tensor)
    assert isinstance(shards[data.VAL].feats_NCT, np.ndarray)
    os.remove(pads.dataset(ts.features_uri, format="parquet").files[0])
    with pytest.raises(data.TrainDataError, match="no longer in the features"):
        data.read_features(ts, data.TRAIN)


def test_arrow_threads_widens_the_pool_for_a_read_and_restores_it():
    """Ray sets OMP_NUM_THREADS to a worker's CPUs, and Arrow sizes its decoding pool from it:
    the rows' files are read with a pool as wide as the threads reading them."""
    import pyarrow as pa

    before = pa.cpu_count()
    pa.set_cpu_count(1)
    try:
        with data.arrow_threads(3):
            assert pa.cpu_count() == 3
        assert pa.cpu_count() == 1
        with data.arrow_threads(1):
            assert pa.cpu_count() == 1
    finally:
        pa.set_cpu_count(before)
