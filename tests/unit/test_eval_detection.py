"""Detection mAP: hand-computed cases and parity with MMAction2's ActivityNetLocalization."""

from __future__ import annotations

import json

import numpy as np
import pytest

import core  # noqa: F401  (upstream shims before mmaction)
from core.eval.detection import activitynet_detection_map, interpolated_ap_T


def _mm_functional():
    return pytest.importorskip("mmaction.evaluation.functional", reason="needs mmaction (mmcv)")


def _map(ground_truth, detections):
    """detections: (video, t_start, t_end, label, score) rows."""
    return activitynet_detection_map(
        ground_truth,
        [d[0] for d in detections],
        np.array([d[1:3] for d in detections], dtype=np.float64).reshape(-1, 2),
        [d[3] for d in detections],
        np.array([d[4] for d in detections], dtype=np.float64),
    )


GT = {"v_a": (np.array([[0.0, 10.0]]), ["x"])}


# ----- hand-computed -----


@pytest.mark.unit
def test_duplicate_detection_is_a_false_positive_after_full_recall():
    # tp then fp: precision [1, .5], recall [1, 1] -> AP 1.
    result = _map(GT, [("v_a", 0, 10, "x", 0.9), ("v_a", 0, 10, "x", 0.8)])
    np.testing.assert_array_equal(result.ap_TC, np.ones((10, 1)))
    assert result.metrics() == {"mAP": 1.0, "mAP@0.5": 1.0, "mAP@0.75": 1.0, "mAP@0.95": 1.0}


@pytest.mark.unit
def test_ranking_by_score():
    # A higher-scored miss first: precision [0, .5], recall [0, 1] -> AP 0.5.
    result = _map(GT, [("v_a", 20, 30, "x", 0.9), ("v_a", 0, 10, "x", 0.8)])
    assert result.average_map == pytest.approx(0.5)
    result = _map(GT, [("v_a", 20, 30, "x", 0.7), ("v_a", 0, 10, "x", 0.8)])
    assert result.average_map == pytest.approx(1.0)


@pytest.mark.unit
def test_iou_threshold_with_float32_rounding():
    # IoU 7/10 is stored as float32 0.69999999 < 0.7: a hit at 0.5 ... 0.65 only.
    result = _map(GT, [("v_a", 0, 7, "x", 0.9)])
    np.testing.assert_array_equal(result.ap_TC[:, 0], [1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    assert result.average_map == pytest.approx(0.4)
    assert result.map_at(0.5) == 1.0 and result.map_at(0.75) == 0.0


@pytest.mark.unit
def test_class_without_detections_scores_zero_and_other_labels_are_dropped():
    gt = {"v_a": (np.array([[0.0, 10.0], [20.0, 30.0]]), ["x", "y"])}
    result = _map(gt, [("v_a", 0, 10, "x", 0.9), ("v_a", 20, 30, "z", 0.9)])
    assert result.class_names == ["x", "y"]
    assert result.per_class_ap() == {"x": 1.0, "y": 0.0}
    assert result.average_map == 0.5 and result.num_detections == 1


@pytest.mark.unit
def test_detection_in_video_without_ground_truth_is_false_positive():
    gt = {"v_a": (np.array([[0.0, 10.0]]), ["x"]), "v_b": (np.zeros((0, 2)), [])}
    result = _map(gt, [("v_b", 0, 10, "x", 0.9), ("v_a", 0, 10, "x", 0.5)])
    assert result.average_map == pytest.approx(0.5)


@pytest.mark.unit
def test_greedy_matching_takes_highest_iou_unmatched_ground_truth():
    # Ground truths [0, 10] and [1, 10]. Detection 1 [1, 10] overlaps them by 0.9 and 1.0 and
    # takes the second. Detection 2 [1.5, 10] overlaps them by 0.85 and 0.94; the second is
    # taken, so it matches the first up to tIoU 0.85 and is a false positive above.
    gt = {"v_a": (np.array([[0.0, 10.0], [1.0, 10.0]]), ["x", "x"])}
    result = _map(gt, [("v_a", 1, 10, "x", 0.9), ("v_a", 1.5, 10, "x", 0.8)])
    ap_T = result.ap_TC[:, 0]
    np.testing.assert_allclose(ap_T, [1, 1, 1, 1, 1, 1, 1, 1, 0.5, 0.5])


@pytest.mark.unit
def test_interpolated_ap_matches_voc_definition():
    tp_TM = np.array([[True, False, True, False]])
    # precision [1, .5, .667, .5], recall [1/3, 1/3, 2/3, 2/3] with 3 ground truths
    expected = (1 / 3) * 1.0 + (1 / 3) * (2 / 3)
    assert interpolated_ap_T(tp_TM, 3)[0] == pytest.approx(expected)


# ----- parity with MMAction2 -----


def random_detections(rng, num_videos, num_classes, max_gt=5, max_det=40, dur=100.0):
    labels = [f"class_{c}" for c in range(num_classes)]
    gt, detections = {}, []
    for i in range(num_videos):
        n = int(rng.integers(0 if rng.random() < 0.15 else 1, max_gt + 1))
        start = rng.uniform(0, 0.8 * dur, n)
        segments = np.stack([start, start + rng.uniform(1, 0.3 * dur, n)], 1)
        names = [str(x) for x in rng.choice(labels, n)]
        if n > 1 and rng.random() < 0.3:  # a duplicated ground truth
            segments[1], names[1] = segments[0], names[0]
        gt[f"v_{i:04d}"] = (segments, names)
        for _ in range(int(rng.integers(0, max_det + 1))):
            if n and rng.random() < 0.6:
                k = int(rng.integers(n))
                a, b = np.sort(segments[k] + rng.normal(0, 3, 2))
                label = names[k] if rng.random() < 0.8 else str(rng.choice(labels))
            else:
                a = rng.uniform(0, 0.8 * dur)
                b, label = a + rng.uniform(1, 0.3 * dur), str(rng.choice(labels))
            score = float(np.float32(rng.random()))
            detections.append((f"v_{i:04d}", float(a), float(b) + 0.01, label, score))
    return gt, detections


def mmaction_ap(tmp_path, gt, detections):
    """Writes MMAction2's input files (anet_anno ground truth with v_ ids, results without)
    and runs ActivityNetLocalization; returns (ap (T, C), activity_index, average mAP)."""
    mm = _mm_functional()
    gt_json = {
        v: {
            "duration_second": 100.0,
            "annotations": [
                {"segment": [float(s), float(e)], "label": label}
                for (s, e), label in zip(segments, labels, strict=True)
            ],
        }
        for v, (segments, labels) in gt.items()
    }
    results = {}
    for v, a, b, label, score in detections:
        results.setdefault(v[2:], []).append({"segment": [a, b], "label": label, "score": score})
    (tmp_path / "gt.json").write_text(json.dumps(gt_json))
    (tmp_path / "pred.json").write_text(json.dumps({"results": results}))
    anet = mm.ActivityNetLocalization(str(tmp_path / "gt.json"), str(tmp_path / "pred.json"))
    _, average_map = anet.evaluate()
    return anet.ap, anet.activity_index, average_map


@pytest.mark.unit
@pytest.mark.parametrize("seed", range(10))
def test_parity_with_mmaction(tmp_path, seed):
    rng = np.random.default_rng(seed)
    gt, detections = random_detections(rng, int(rng.integers(1, 30)), int(rng.integers(1, 6)))
    known = {label for _, labels in gt.values() for label in labels}
    # MMAction2 raises KeyError on labels without ground truth; we drop them.
    detections = [d for d in detections if d[3] in known]
    ap_TC, activity_index, average_map = mmaction_ap(tmp_path, gt, detections)
    ours = _map(gt, detections)
    columns = [activity_index[name] for name in ours.class_names]
    np.testing.assert_allclose(ours.ap_TC, ap_TC[:, columns], rtol=1e-9, atol=1e-12)
    assert ours.average_map == pytest.approx(average_map, rel=1e-9, abs=1e-12)


@pytest.mark.unit
def test_parity_with_mmaction_many_detections_per_group(tmp_path):
    # One class, few videos, many detections each: long greedy chains.
    rng = np.random.default_rng(42)
    gt, detections = random_detections(rng, 4, 1, max_gt=8, max_det=200)
    ap_TC, _, average_map = mmaction_ap(tmp_path, gt, detections)
    ours = _map(gt, detections)
    np.testing.assert_allclose(ours.ap_TC, ap_TC, rtol=1e-9, atol=1e-12)
    assert ours.average_map == pytest.approx(average_map, rel=1e-9)
