"""AR@AN: hand-computed cases, parity with MMAction2, the evaluate() entry and the plot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import core  # noqa: F401  (upstream shims before mmaction)
from core import storage
from core.eval import metrics as M
from core.eval.annotations import parse_annotations
from core.eval.plots import ar_an_png, write_ar_an_png
from core.eval.proposals import (
    average_recall_at_avg_proposals,
    sort_by_group_and_score,
)


def _mm_functional():
    return pytest.importorskip("mmaction.evaluation.functional", reason="needs mmaction (mmcv)")


def random_inputs(rng, num_videos, max_gt=4, max_props=60, empty_fraction=0.2, dur=100.0):
    """Ground truth (N, 2) and proposals (M, 3) per video: overlapping segments, some videos
    without proposals, scores without ties."""
    ground_truth, proposals = {}, {}
    for i in range(num_videos):
        n = int(rng.integers(1, max_gt + 1))
        start = rng.uniform(0, 0.8 * dur, n)
        ground_truth[f"v{i}"] = np.stack([start, start + rng.uniform(1, 0.4 * dur, n)], 1)
        m = 0 if rng.random() < empty_fraction else int(rng.integers(1, max_props + 1))
        near = ground_truth[f"v{i}"][rng.integers(0, n, m)] + rng.normal(0, 4, (m, 2))
        far = np.sort(rng.uniform(0, dur, (m, 2)), axis=1)
        segments = np.where(rng.random((m, 1)) < 0.5, np.sort(near, axis=1), far)
        proposals[f"v{i}"] = np.concatenate([segments, rng.random((m, 1))], 1).reshape(-1, 3)
    return ground_truth, proposals


# ----- hand-computed -----


@pytest.mark.unit
def test_one_perfect_proposal_recall_one_auc_99():
    # One proposal, one video: every curve point keeps it; the curve spans AN 1..100, so the
    # trapezoid area over 99 units divided by 100 gives MMAction2's AUC of 99.
    result = average_recall_at_avg_proposals({"a": np.array([[0.0, 10.0]])}, {"a": [[0, 10, 1]]})
    expected = {"AR@1": 1.0, "AR@5": 1.0, "AR@10": 1.0, "AR@100": 1.0, "AUC": 99.0}
    assert result.metrics() == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(result.proposals_per_video_K, np.arange(1, 101), rtol=1e-12)


@pytest.mark.unit
def test_ranking_by_score_decides_ar_at_1():
    # Best-scored proposal misses, second one hits: with 2 proposals, curve point k keeps
    # min(k + 1, 2) proposals, so AR@1 = 0 and AR@5 = 1.
    gt = {"a": np.array([[0.0, 10.0]])}
    result = average_recall_at_avg_proposals(gt, {"a": [[20, 30, 0.9], [0, 10, 0.8]]})
    assert result.ar_at(1) == 0.0 and result.ar_at(5) == 1.0
    swapped = average_recall_at_avg_proposals(gt, {"a": [[20, 30, 0.8], [0, 10, 0.9]]})
    assert swapped.ar_at(1) == 1.0


@pytest.mark.unit
def test_iou_is_float32_like_mmaction():
    # IoU 7/10 rounds to float32 0.69999999, below the float64 threshold 0.7: recalled at
    # 0.5, 0.55, 0.6, 0.65 only -> 4 of 10 thresholds.
    result = average_recall_at_avg_proposals({"a": np.array([[0.0, 10.0]])}, {"a": [[0, 7, 1]]})
    assert result.ar_at(100) == pytest.approx(0.4)
    np.testing.assert_array_equal(result.recall_TK[:, -1], [1, 1, 1, 1, 0, 0, 0, 0, 0, 0])


@pytest.mark.unit
def test_listed_video_without_proposals_counts_as_missed():
    gt = {"a": np.array([[0.0, 10.0]]), "b": np.array([[5.0, 8.0]])}
    result = average_recall_at_avg_proposals(gt, {"a": np.array([[0, 10, 1.0]])})
    assert result.ar_at(100) == 0.5
    assert result.num_videos == 2 and result.num_proposals == 1
    # Proposals of videos that are not listed change nothing.
    extra = average_recall_at_avg_proposals(gt, {"a": [[0, 10, 1.0]], "zzz": [[0, 1, 1.0]]})
    assert extra.metrics() == result.metrics()


@pytest.mark.unit
def test_no_proposals_is_an_error():
    with pytest.raises(ValueError, match="needs videos, proposals and ground truth"):
        average_recall_at_avg_proposals({"a": np.array([[0.0, 1.0]])}, {})


@pytest.mark.unit
def test_sort_by_group_and_score_equals_lexsort_with_ties():
    rng = np.random.default_rng(3)
    group = rng.integers(0, 7, 500)
    scores = rng.integers(0, 5, 500).astype(np.float32)  # many ties
    expected = np.lexsort((np.arange(500), -scores.astype(np.float64), group))
    np.testing.assert_array_equal(sort_by_group_and_score(group, scores), expected)


# ----- parity with MMAction2 -----


@pytest.mark.unit
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("max_avg", [100, 7, None])
def test_parity_with_mmaction(seed, max_avg):
    mm = _mm_functional()
    rng = np.random.default_rng(seed)
    gt, props = random_inputs(rng, int(rng.integers(2, 40)), max_props=int(rng.integers(2, 150)))
    total = sum(len(p) for p in props.values())
    recall, avg_recall, ppv, auc = mm.average_recall_at_avg_proposals(
        gt, props, total, max_avg_proposals=max_avg
    )
    ours = average_recall_at_avg_proposals(gt, props, max_avg_proposals=max_avg)
    np.testing.assert_allclose(ours.recall_TK, recall, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.avg_recall_K, avg_recall, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.proposals_per_video_K, ppv, rtol=1e-12)
    assert ours.auc == pytest.approx(auc, rel=1e-12)


@pytest.mark.unit
def test_parity_with_mmaction_videos_without_ground_truth():
    mm = _mm_functional()
    rng = np.random.default_rng(11)
    gt, props = random_inputs(rng, 12)
    gt["v3"] = np.zeros((0, 2))  # MMAction2's function accepts an empty (0, 2) ground truth
    gt["v4"] = np.zeros((0, 2))
    props["v4"] = np.zeros((0, 3))
    total = sum(len(p) for p in props.values())
    recall, _, _, auc = mm.average_recall_at_avg_proposals(gt, props, total, max_avg_proposals=100)
    ours = average_recall_at_avg_proposals(gt, props)
    np.testing.assert_allclose(ours.recall_TK, recall, rtol=0, atol=1e-12)
    assert ours.auc == pytest.approx(auc, rel=1e-12)


@pytest.mark.unit
def test_parity_with_mmaction_float32_boundaries():
    # Segments on a 0.1 s grid hit IoUs such as 0.7 and 0.75 exactly in decimal, where float32
    # rounding decides; MMAction2 and we must round alike.
    mm = _mm_functional()
    rng = np.random.default_rng(5)
    gt = {f"v{i}": np.round(np.sort(rng.uniform(0, 20, (3, 2)), 1), 1) for i in range(30)}
    props = {}
    for v, segs in gt.items():
        base = np.repeat(segs, 10, axis=0)
        base[:, 1] = base[:, 0] + (base[:, 1] - base[:, 0]) * rng.choice([0.7, 0.75, 0.8, 1], 30)
        props[v] = np.concatenate([np.round(base, 1), rng.random((30, 1))], 1)
    total = sum(len(p) for p in props.values())
    recall, _, _, auc = mm.average_recall_at_avg_proposals(gt, props, total, max_avg_proposals=100)
    ours = average_recall_at_avg_proposals(gt, props)
    np.testing.assert_array_equal(ours.recall_TK, recall)
    assert ours.auc == pytest.approx(auc, rel=1e-12)


# ----- evaluate() from a table, and the plot -----


def _table(rows):
    return pd.DataFrame(rows, columns=["video_id", "t_start", "t_end", "score", "label"]).assign(
        label_score=lambda f: f["score"]
    )


ANNOS = {
    "database": {
        "a": {
            "subset": "validation",
            "duration": 30.0,
            "annotations": [
                {"segment": [0, 10], "label": "x"},
                {"segment": [20, 25], "label": "y"},
            ],
        },
        "b": {
            "subset": "validation",
            "duration": 9.0,
            "annotations": [{"segment": [1, 3], "label": "x"}],
        },
        "c": {
            "subset": "training",
            "duration": 9.0,
            "annotations": [{"segment": [1, 3], "label": "x"}],
        },
    }
}


@pytest.mark.unit
def test_evaluate_table_matches_direct_functions_and_handles_ids():
    table = _table(
        [
            ("v_a", 0.0, 10.0, 0.9, "x"),  # v_ prefix matches official id "a"
            ("v_a", 20.0, 24.0, 0.8, "y"),
            ("v_a", 5.0, 6.0, 0.7, "x"),
            ("c", 1.0, 3.0, 0.9, "x"),  # training video: ignored with subset=validation
            ("zzz", 1.0, 3.0, 0.9, "x"),  # unknown video: ignored
        ]
    )
    metrics = M.evaluate(table, parse_annotations(ANNOS), subset="validation")
    direct = average_recall_at_avg_proposals(
        {"a": np.array([[0, 10], [20, 25]]), "b": np.array([[1, 3]])},
        {"a": np.array([[0, 10, 0.9], [20, 24, 0.8], [5, 6, 0.7]])},
    )
    for key, value in direct.metrics().items():
        assert metrics[key] == pytest.approx(value)
    assert metrics["num_videos"] == 2 and metrics["num_proposals"] == 3
    assert metrics["num_videos_with_proposals"] == 1
    # class x: gt a[0,10], b[1,3]; detections a[0,10] tp, a[5,6] fp -> AP 0.5 at every tIoU;
    # class y: gt a[20,25], detection a[20,24] IoU 0.8 -> tp up to tIoU 0.8 (7 of 10).
    assert metrics["per_class_AP"] == pytest.approx({"x": 0.5, "y": 0.7})
    assert metrics["mAP"] == pytest.approx(0.6)
    assert metrics["mAP@0.5"] == pytest.approx(0.75) and metrics["mAP@0.95"] == pytest.approx(0.25)


@pytest.mark.unit
def test_evaluate_without_matching_ids_is_an_input_error():
    with pytest.raises(M.EvaluationInputError, match="no proposal video_id matches"):
        M.evaluate(_table([("q", 0.0, 1.0, 0.5, "x")]), parse_annotations(ANNOS))


@pytest.mark.unit
def test_evaluate_without_labels_reports_ar_only():
    table = _table([("a", 0.0, 10.0, 0.9, "x")]).drop(columns=["label", "label_score"])
    metrics = M.evaluate(table, parse_annotations(ANNOS))
    assert "AR@100" in metrics and "mAP" not in metrics


@pytest.mark.unit
def test_ar_an_png_written_through_storage():
    result = average_recall_at_avg_proposals(
        {"a": np.array([[0.0, 10.0]])}, {"a": [[0, 10, 1], [3, 5, 0.5]]}
    )
    png = ar_an_png(result)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    uri = "memory://eval-test/plots/ar_an.png"
    write_ar_an_png(result, uri)
    assert storage.read_bytes(uri)[:8] == b"\x89PNG\r\n\x1a\n"
