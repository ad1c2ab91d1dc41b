"""core.eval.confusion and core.eval.report: the labels' confusion matrix and the figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.eval.confusion import confusion_matrix
from core.eval.report import write_report
from tests.unit.samples import two_video_evaluation

pytestmark = pytest.mark.unit


def test_confusion_takes_the_best_scored_overlapping_proposal():
    # video 0: a (class 0) at [0, 10], b (class 1) at [20, 30]; video 1: c (class 1) at [0, 5]
    gt_video_N = np.array([0, 0, 1])
    gt_class_N = np.array([0, 1, 1])
    gt_N2 = np.array([[0.0, 10.0], [20.0, 30.0], [0.0, 5.0]])
    prop_video_M = np.array([0, 0, 0, 1])
    prop_class_M = np.array([1, 0, 1, 1])
    prop_M2 = np.array([[0.0, 9.0], [1.0, 10.0], [21.0, 29.0], [40.0, 50.0]])
    prop_score_M = np.array([0.9, 0.5, 0.8, 0.9])
    cm = confusion_matrix(gt_video_N, gt_class_N, gt_N2, prop_video_M, prop_class_M, prop_M2,
                          prop_score_M, ["a", "b"])  # fmt: skip
    # a: found best by the 0.9 proposal labelled b; b: found, right; c: nothing overlaps
    assert cm.counts_CC1.tolist() == [[0, 1, 0], [0, 1, 1]]
    assert cm.label_accuracy() == pytest.approx(0.5)
    assert cm.to_json()["columns"] == ["a", "b", "missed"]


def test_report_writes_metrics_with_per_class_ap_and_the_figures(tmp_path):
    evaluation = two_video_evaluation()
    metrics = write_report(evaluation, str(tmp_path), extra={"checkpoint": "x"})
    assert metrics["per_class_AP@0.5"] == {"a": pytest.approx(1.0), "b": pytest.approx(0.5)}
    assert metrics["confusion_matrix"]["counts"] == [[1, 0, 0], [1, 1, 0]]
    assert json.loads((tmp_path / "metrics.json").read_text())["checkpoint"] == "x"
    for name in ("ar_an.png", "per_class_ap.png", "confusion.png", "timelines.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
