"""Temporal action detection: average precision per class and tIoU threshold, and mAP.

Equal to MMAction2 1.2.0's ``mmaction.evaluation.functional.ActivityNetLocalization``
(``compute_average_precision_detection`` per class, VOC-2011 ``interpolated_precision_recall``),
vectorised:

* one sort of all detections by (class, score descending, row), not one per class;
* IoU only for (detection, ground truth) pairs of the same video and class, in one flat array,
  rounded to float32 as MMAction2's ``pairwise_temporal_iou`` stores it;
* the greedy matching (a detection takes the highest-IoU ground truth of its video and class
  that no higher-scored detection took, if that IoU >= the threshold) runs only for the
  detections that overlap some ground truth enough, all (video, class) groups and thresholds at
  once: step ``k`` matches the ``k``-th such detection of every group.

Classes are those with ground truth (MMAction2 builds its class index from the ground-truth
file); detections of other classes cannot be true positives of any evaluated class and are
dropped. A detection whose video has no ground truth of its class is a false positive.
Score ties rank the earlier row first (MMAction2's stable ``list.sort``).

Shapes: ``N`` ground-truth segments, ``M`` detections, ``P`` (detection, ground truth) pairs,
``T`` thresholds, ``C`` classes, ``S`` detections matched in one step, ``G`` the most ground
truth of one (video, class) group.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from core.eval.proposals import TIOU_THRESHOLDS, segment_tiou_float32, sort_by_group_and_score

MAP_AT = (0.5, 0.75, 0.95)


@dataclasses.dataclass
class DetectionResult:
    """AP per tIoU threshold and class.

    Attributes:
        ap_TC: Average precision, fraction.
        class_names: The ``C`` classes evaluated (those with ground truth).
        tiou_thresholds_T: The thresholds.
        num_detections: Detections evaluated (of the evaluated classes).
    """

    ap_TC: np.ndarray
    class_names: list[str]
    tiou_thresholds_T: np.ndarray
    num_detections: int

    @property
    def map_T(self) -> np.ndarray:
        """mAP per threshold (MMAction2's ``ActivityNetLocalization.mAP``)."""
        return self.ap_TC.mean(axis=1)

    @property
    def average_map(self) -> float:
        """mAP averaged over thresholds (MMAction2's ``average_mAP``)."""
        return float(self.map_T.mean())

    def map_at(self, tiou: float) -> float:
        """mAP at the threshold nearest ``tiou``."""
        return float(self.map_T[int(np.argmin(np.abs(self.tiou_thresholds_T - tiou)))])

    def per_class_ap(self) -> dict[str, float]:
        """AP of each class averaged over thresholds."""
        return {
            c: float(ap) for c, ap in zip(self.class_names, self.ap_TC.mean(axis=0), strict=True)
        }

    def per_class_ap_at(self, tiou: float) -> dict[str, float]:
        """AP of each class at the threshold nearest ``tiou``."""
        t = int(np.argmin(np.abs(self.tiou_thresholds_T - tiou)))
        return {c: float(ap) for c, ap in zip(self.class_names, self.ap_TC[t], strict=True)}

    def metrics(self) -> dict[str, float]:
        """``mAP`` (mean over thresholds) and ``mAP@0.5``, ``mAP@0.75``, ``mAP@0.95``."""
        out = {"mAP": self.average_map}
        out.update({f"mAP@{t:g}": self.map_at(t) for t in MAP_AT})
        return out


def _pairs(
    det_key_M: np.ndarray, gt_key_N: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every (detection, ground truth) pair with the same (video, class) key.

    Returns ``pair_det_P``, ``pair_gt_P`` (index into ``gt_key_N``), ``pair_slot_P`` (the
    ground truth's position within its group, in input order), ``det_group_M`` (-1: no ground
    truth) and ``group_size`` per group.
    """
    gt_order_N = np.argsort(gt_key_N, kind="stable")
    group_keys, group_start, group_size = np.unique(
        gt_key_N[gt_order_N], return_index=True, return_counts=True
    )
    if len(group_keys):
        pos_M = np.searchsorted(group_keys, det_key_M).clip(max=len(group_keys) - 1)
        has_gt_M = group_keys[pos_M] == det_key_M
    else:
        pos_M, has_gt_M = np.zeros_like(det_key_M), np.zeros(len(det_key_M), dtype=bool)
    det_group_M = np.where(has_gt_M, pos_M, -1)
    pairs_M = np.where(has_gt_M, group_size[pos_M], 0)
    pair_det_P = np.repeat(np.arange(len(det_key_M)), pairs_M)
    pair_slot_P = np.arange(len(pair_det_P)) - np.repeat(np.cumsum(pairs_M) - pairs_M, pairs_M)
    pair_gt_P = gt_order_N[group_start[det_group_M[pair_det_P]] + pair_slot_P]
    return pair_det_P, pair_gt_P, pair_slot_P, det_group_M, group_size


def _greedy_match(
    tiou_SG_rows: np.ndarray, det_group_D: np.ndarray, num_groups: int, tiou_T: np.ndarray
) -> np.ndarray:
    """True positives of detections that overlap some ground truth enough.

    Args:
        tiou_SG_rows: ``(D, G)`` IoU of each detection with its group's ground truth (slots
            past the group's size hold -inf); rows in rank order within each group.
        det_group_D: Group of each detection.
        num_groups: Number of groups.
        tiou_T: Thresholds.

    Returns:
        ``(T, D)`` bool.
    """
    num_det, num_slots = tiou_SG_rows.shape
    order_D = np.argsort(det_group_D, kind="stable")
    sizes = np.bincount(det_group_D, minlength=num_groups)
    step_D = np.empty(num_det, dtype=np.int64)
    step_D[order_D] = np.arange(num_det) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    by_step_D = np.argsort(step_D, kind="stable")
    step_bounds = np.searchsorted(step_D[by_step_D], np.arange(step_D.max() + 2))
    taken_GTS = np.zeros((num_groups, len(tiou_T), num_slots), dtype=bool)
    tp_TD = np.zeros((len(tiou_T), num_det), dtype=bool)
    for k in range(len(step_bounds) - 1):
        sel_S = by_step_D[step_bounds[k] : step_bounds[k + 1]]
        group_S = det_group_D[sel_S]
        tiou_S1G = tiou_SG_rows[sel_S][:, None, :].astype(np.float64)
        free_STG = (tiou_S1G >= tiou_T[None, :, None]) & ~taken_GTS[group_S]
        # Highest IoU first; equal IoUs: the later slot (MMAction2's argsort()[::-1]).
        masked_STG = np.where(free_STG, tiou_S1G, -np.inf)[:, :, ::-1]
        best_ST = num_slots - 1 - np.argmax(masked_STG, axis=2)
        s_idx, t_idx = np.nonzero(free_STG.any(axis=2))
        taken_GTS[group_S[s_idx], t_idx, best_ST[s_idx, t_idx]] = True
        tp_TD[t_idx, sel_S[s_idx]] = True
    return tp_TD


def interpolated_ap_T(tp_TM: np.ndarray, num_gt: int) -> np.ndarray:
    """VOC-2011 interpolated AP per threshold of one class's ranked detections, as MMAction2's
    ``interpolated_precision_recall`` over its cumulative precision and recall."""
    num_t, num_det = tp_TM.shape
    if num_det == 0:
        return np.zeros(num_t)
    tp_cum_TM = np.cumsum(tp_TM, axis=1, dtype=np.float64)
    fp_cum_TM = np.cumsum(~tp_TM, axis=1, dtype=np.float64)
    zeros_T1, ones_T1 = np.zeros((num_t, 1)), np.ones((num_t, 1))
    precision_TM = np.hstack([zeros_T1, tp_cum_TM / (tp_cum_TM + fp_cum_TM), zeros_T1])
    recall_TM = np.hstack([zeros_T1, tp_cum_TM / float(num_gt), ones_T1])
    envelope_TM = np.maximum.accumulate(precision_TM[:, ::-1], axis=1)[:, ::-1]
    step_TM = np.diff(recall_TM, axis=1)
    return np.sum(np.where(step_TM != 0, step_TM * envelope_TM[:, 1:], 0.0), axis=1)


def average_precision_flat(
    gt_video_N: np.ndarray,
    gt_class_N: np.ndarray,
    gt_segments_N2: np.ndarray,
    det_video_M: np.ndarray,
    det_class_M: np.ndarray,
    det_segments_M2: np.ndarray,
    det_scores_M: np.ndarray,
    num_classes: int,
    tiou_thresholds_T: np.ndarray = TIOU_THRESHOLDS,
) -> np.ndarray:
    """``(T, C)`` AP from flat integer-coded arrays; a class with no ground truth gets NaN.

    Args:
        gt_video_N: Video of each ground-truth segment (any non-negative int code).
        gt_class_N: Class in ``[0, num_classes)``.
        gt_segments_N2: ``[t_start, t_end]`` seconds.
        det_video_M: Video of each detection (same codes as ``gt_video_N``).
        det_class_M: Class in ``[0, num_classes)``.
        det_segments_M2: ``[t_start, t_end]`` seconds.
        det_scores_M: Detection confidence; higher ranks first.
        num_classes: ``C``.
        tiou_thresholds_T: Thresholds.
    """
    tiou_T = np.asarray(tiou_thresholds_T, dtype=np.float64)
    gt_video_N, gt_class_N = np.asarray(gt_video_N, np.int64), np.asarray(gt_class_N, np.int64)
    det_class_M = np.asarray(det_class_M, np.int64)
    order_M = sort_by_group_and_score(det_class_M, np.asarray(det_scores_M))
    det_video_M = np.asarray(det_video_M, np.int64)[order_M]
    det_class_M, det_segments_M2 = det_class_M[order_M], np.asarray(det_segments_M2)[order_M]
    num_videos = int(max(gt_video_N.max(initial=-1), det_video_M.max(initial=-1))) + 1
    pair_det_P, pair_gt_P, pair_slot_P, det_group_M, group_size = _pairs(
        det_class_M * num_videos + det_video_M, gt_class_N * num_videos + gt_video_N
    )
    tiou_P = segment_tiou_float32(
        det_segments_M2[pair_det_P], gt_segments_N2[pair_gt_P], arithmetic=np.float64
    )
    # Only detections that reach the lowest threshold with some ground truth can match.
    reach_P = tiou_P >= tiou_T.min()
    contested_D = np.unique(pair_det_P[reach_P])
    row_M = np.full(len(det_class_M), -1, dtype=np.int64)
    row_M[contested_D] = np.arange(len(contested_D))
    tiou_DG = np.full((len(contested_D), int(group_size.max(initial=0))), -np.inf, np.float32)
    on_contested_P = row_M[pair_det_P] >= 0
    tiou_DG[row_M[pair_det_P[on_contested_P]], pair_slot_P[on_contested_P]] = tiou_P[on_contested_P]
    tp_TM = np.zeros((len(tiou_T), len(det_class_M)), dtype=bool)
    if len(contested_D):
        tp_TM[:, contested_D] = _greedy_match(
            tiou_DG, det_group_M[contested_D], len(group_size), tiou_T
        )
    return _ap_per_class(tp_TM, det_class_M, np.bincount(gt_class_N, minlength=num_classes))


def _ap_per_class(tp_TM: np.ndarray, det_class_M: np.ndarray, num_gt_C: np.ndarray) -> np.ndarray:
    """``(T, C)`` AP; detections sorted by class; NaN for classes without ground truth."""
    bounds = np.searchsorted(det_class_M, np.arange(len(num_gt_C) + 1))
    ap_TC = np.full((tp_TM.shape[0], len(num_gt_C)), np.nan)
    for c in np.flatnonzero(num_gt_C):
        ap_TC[:, c] = interpolated_ap_T(tp_TM[:, bounds[c] : bounds[c + 1]], int(num_gt_C[c]))
    return ap_TC


def activitynet_detection_map(
    ground_truth: Mapping[str, tuple[np.ndarray, Sequence[str]]],
    det_video_ids: Sequence[str],
    det_segments_M2: np.ndarray,
    det_labels: Sequence[str],
    det_scores_M: np.ndarray,
    tiou_thresholds_T: np.ndarray = TIOU_THRESHOLDS,
) -> DetectionResult:
    """Detection AP and mAP as MMAction2's ``ActivityNetLocalization``.

    Args:
        ground_truth: video id -> (``(N, 2)`` segments in seconds, ``N`` labels). Classes are
            numbered in order of first appearance here, as MMAction2 does.
        det_video_ids: Video of each detection; detections of videos not in ``ground_truth``
            are false positives.
        det_segments_M2: ``[t_start, t_end]`` seconds.
        det_labels: Label of each detection; labels without ground truth are dropped.
        det_scores_M: Detection confidence (``label_score``).
        tiou_thresholds_T: Thresholds.
    """
    class_index: dict[str, int] = {}
    video_index = {video_id: i for i, video_id in enumerate(ground_truth)}
    gt_video, gt_class, gt_segments = [], [], []
    for video_id, (segments_N2, labels) in ground_truth.items():
        for segment, label in zip(np.asarray(segments_N2).reshape(-1, 2), labels, strict=True):
            gt_video.append(video_index[video_id])
            gt_class.append(class_index.setdefault(str(label), len(class_index)))
            gt_segments.append(segment)
    det_class_M = np.array([class_index.get(str(label), -1) for label in det_labels], np.int64)
    det_video_M = np.array(
        [video_index.get(v, len(video_index)) for v in det_video_ids], dtype=np.int64
    )
    keep_M = det_class_M >= 0
    ap_TC = average_precision_flat(
        gt_video_N=np.asarray(gt_video, dtype=np.int64),
        gt_class_N=np.asarray(gt_class, dtype=np.int64),
        gt_segments_N2=np.asarray(gt_segments, dtype=np.float64).reshape(-1, 2),
        det_video_M=det_video_M[keep_M],
        det_class_M=det_class_M[keep_M],
        det_segments_M2=np.asarray(det_segments_M2, dtype=np.float64).reshape(-1, 2)[keep_M],
        det_scores_M=np.asarray(det_scores_M, dtype=np.float64)[keep_M],
        num_classes=len(class_index),
        tiou_thresholds_T=tiou_thresholds_T,
    )
    return DetectionResult(
        ap_TC=ap_TC,
        class_names=list(class_index),
        tiou_thresholds_T=np.asarray(tiou_thresholds_T, dtype=np.float64),
        num_detections=int(keep_M.sum()),
    )
