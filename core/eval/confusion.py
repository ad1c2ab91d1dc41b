"""Which class the proposals give each ground-truth action: the labels' confusion matrix.

Detection mAP mixes two failures, a segment not found and a segment found with the wrong
label. The confusion matrix separates them: for every ground-truth segment, the proposal of
its video with the highest ``score`` (the class-agnostic confidence) among those that overlap
it by tIoU >= ``tiou`` is *the* proposal that found it; its ``label`` is the prediction. A
segment no proposal overlaps enough counts in the ``missed`` column.

Shapes: ``N`` ground-truth segments, ``M`` proposals, ``C`` classes, ``P`` (segment,
proposal) pairs of the same video.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from core.eval.proposals import segment_tiou_float32

MISSED = "missed"


@dataclasses.dataclass
class ConfusionMatrix:
    """Ground-truth class (rows) against the label of the proposal that found it (columns).

    Attributes:
        counts_CC1: ``(C, C + 1)`` segment counts; the last column is :data:`MISSED`.
        class_names: The ``C`` classes, row and column order.
        tiou: The overlap a proposal needs to find a segment.
    """

    counts_CC1: np.ndarray
    class_names: list[str]
    tiou: float

    def label_accuracy(self) -> float:
        """Share of the found segments whose finding proposal has the right label."""
        found = self.counts_CC1[:, :-1]
        total = found.sum()
        return float(np.trace(found) / total) if total else 0.0

    def to_json(self) -> dict:
        return {
            "classes": list(self.class_names),
            "columns": [*self.class_names, MISSED],
            "tiou": self.tiou,
            "counts": self.counts_CC1.astype(int).tolist(),
            "label_accuracy": self.label_accuracy(),
        }


def confusion_matrix(
    gt_video_N: np.ndarray,
    gt_class_N: np.ndarray,
    gt_segments_N2: np.ndarray,
    prop_video_M: np.ndarray,
    prop_class_M: np.ndarray,
    prop_segments_M2: np.ndarray,
    prop_scores_M: np.ndarray,
    class_names: list[str],
    tiou: float = 0.5,
) -> ConfusionMatrix:
    """The confusion matrix (see the module docstring); classes are indices into
    ``class_names``, a proposal class of -1 (unknown label) counts as missed."""
    C = len(class_names)
    counts_CC1 = np.zeros((C, C + 1), dtype=np.int64)
    order_M = np.argsort(prop_video_M, kind="stable")
    videos, starts, sizes = np.unique(prop_video_M[order_M], return_index=True, return_counts=True)
    pos_N = np.searchsorted(videos, gt_video_N).clip(max=max(len(videos) - 1, 0))
    has_N = (videos[pos_N] == gt_video_N) if len(videos) else np.zeros(len(gt_video_N), bool)
    pairs_N = np.where(has_N, sizes[pos_N] if len(videos) else 0, 0)
    pair_gt_P = np.repeat(np.arange(len(gt_video_N)), pairs_N)
    offset_P = np.arange(len(pair_gt_P)) - np.repeat(np.cumsum(pairs_N) - pairs_N, pairs_N)
    pair_prop_P = order_M[starts[pos_N[pair_gt_P]] + offset_P] if len(pair_gt_P) else pair_gt_P
    tiou_P = segment_tiou_float32(
        prop_segments_M2[pair_prop_P], gt_segments_N2[pair_gt_P], np.float64
    )
    hit_P = tiou_P >= tiou
    # per segment: the hitting pair of highest proposal score
    score_P = np.where(hit_P, prop_scores_M[pair_prop_P], -np.inf)
    best_N = np.full(len(gt_video_N), -1, dtype=np.int64)
    order_P = np.lexsort((-score_P, pair_gt_P))
    first_P = np.ones(len(order_P), dtype=bool)
    first_P[1:] = pair_gt_P[order_P][1:] != pair_gt_P[order_P][:-1]
    best_pairs = order_P[first_P]
    found = hit_P[best_pairs]
    best_N[pair_gt_P[best_pairs[found]]] = prop_class_M[pair_prop_P[best_pairs[found]]]
    column_N = np.where(best_N >= 0, best_N, C)
    np.add.at(counts_CC1, (gt_class_N, column_N), 1)
    return ConfusionMatrix(counts_CC1, list(class_names), tiou)
