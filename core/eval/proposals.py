"""Temporal proposal quality: average recall at an average number of proposals (AR@AN).

Equal to MMAction2 1.2.0's ``mmaction.evaluation.functional.average_recall_at_avg_proposals``
(what ``ANetMetric(metric_type='AR@AN')`` reports), vectorised: one sort of all proposals, one
flat array of (ground truth, proposal) pairs, no per-video Python loop. It also reproduces
MMAction2's float32 IoU arithmetic, so results match to the last bit on the same inputs.

Definitions, as MMAction2's:

* each video keeps its best ``int(M_v * ratio)`` proposals by score, ``ratio = max_avg_proposals
  * num_videos / total_num_proposals`` (so at most ``max_avg_proposals`` per video on average);
* curve point ``j`` (100 of them) takes the best ``int(kept_v * pcn_j)`` proposals of every
  video; a ground-truth segment is recalled at tIoU ``t`` when one of them overlaps it by
  ``>= t``; recall is over all ground-truth segments of all videos;
* ``AR@N`` is the recall at curve point ``N - 1`` averaged over the tIoU thresholds (point
  ``N - 1`` is ``N`` proposals per video when ``max_avg_proposals`` is 100);
* ``AUC`` is ``100 * trapezoid(avg_recall, proposals_per_video) / proposals_per_video[-1]``;
* a listed video with no proposals recalls none of its segments.

Score ties rank the earlier row first. MMAction2 ranks them by ``argsort()[::-1]``, whose order
among equal scores is whatever numpy's (SIMD, unstable) sort leaves, so no implementation can
reproduce it; results agree whenever no two proposals of a video score the same.

Shapes: ``V`` videos, ``N`` ground-truth segments, ``M`` proposals, ``P`` (segment, proposal)
pairs, ``T`` tIoU thresholds, ``K`` = 100 curve points.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import numpy as np

logger = logging.getLogger(__name__)

TIOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
AR_AT = (1, 5, 10, 100)
NUM_CURVE_POINTS = 100


@dataclasses.dataclass
class ARANResult:
    """The AR-AN curve.

    Attributes:
        recall_TK: Recall at threshold ``t`` and curve point ``k``.
        avg_recall_K: ``recall_TK.mean(axis=0)``.
        proposals_per_video_K: Average number of proposals per video at each curve point.
        auc: Area under the AR-AN curve, percent (as MMAction2 prints it).
        tiou_thresholds_T: The tIoU thresholds.
        num_videos: Videos evaluated.
        num_ground_truth: Ground-truth segments over all videos.
        num_proposals: Proposals of the evaluated videos (before the per-video cut).
    """

    recall_TK: np.ndarray
    avg_recall_K: np.ndarray
    proposals_per_video_K: np.ndarray
    auc: float
    tiou_thresholds_T: np.ndarray
    num_videos: int
    num_ground_truth: int
    num_proposals: int

    def ar_at(self, n: int) -> float:
        """``AR@n`` as MMAction2's ANetMetric reports it: mean recall at curve point n - 1."""
        return float(np.mean(self.recall_TK[:, n - 1]))

    def metrics(self) -> dict[str, float]:
        """``AR@1``, ``AR@5``, ``AR@10``, ``AR@100`` (fractions) and ``AUC`` (percent)."""
        out = {f"AR@{n}": self.ar_at(n) for n in AR_AT}
        out["AUC"] = float(self.auc)
        return out


def segment_tiou_float32(
    pred_segments_P2: np.ndarray, gt_segments_P2: np.ndarray, arithmetic: type = np.float32
) -> np.ndarray:
    """Row-wise temporal IoU of paired segments, rounded to float32 as MMAction2's
    ``pairwise_temporal_iou`` stores it.

    Args:
        pred_segments_P2: ``[t_start, t_end]`` of the candidate of each pair.
        gt_segments_P2: ``[t_start, t_end]`` of the target of each pair.
        arithmetic: dtype in which intersection and union are computed: float32 for AR@AN
            (MMAction2 casts segments to float32 there), float64 for detection mAP.
    """
    pred = pred_segments_P2.astype(arithmetic, copy=False)
    gt = gt_segments_P2.astype(arithmetic, copy=False)
    inter_P = (np.minimum(pred[:, 1], gt[:, 1]) - np.maximum(pred[:, 0], gt[:, 0])).clip(0)
    union_P = (gt[:, 1] - gt[:, 0]) + (pred[:, 1] - pred[:, 0]) - inter_P
    with np.errstate(divide="ignore", invalid="ignore"):
        return (inter_P.astype(np.float64) / union_P).astype(np.float32)


def sort_by_group_and_score(group_M: np.ndarray, scores_M: np.ndarray) -> np.ndarray:
    """Indices that sort rows by group ascending, then score descending, then row ascending.

    Equal to ``np.lexsort((rows, -scores, group))`` but about 4x faster: scores become dense
    ranks and the three keys one unique int64, sorted by numpy's (SIMD) argsort.
    """
    num = len(group_M)
    if num == 0:
        return np.zeros(0, dtype=np.int64)
    by_score_M = np.argsort(-scores_M.astype(np.float64))
    sorted_scores_M = scores_M[by_score_M]
    dense_M = np.empty(num, dtype=np.int64)
    dense_M[by_score_M] = np.cumsum(np.r_[False, sorted_scores_M[1:] != sorted_scores_M[:-1]])
    num_groups, num_scores = int(group_M.max()) + 1, int(dense_M.max()) + 1
    if num_groups * num_scores * num >= np.iinfo(np.int64).max:
        return np.lexsort((np.arange(num), -scores_M.astype(np.float64), group_M))
    return np.argsort((group_M * num_scores + dense_M) * num + np.arange(num))


def rank_within_video(
    video_M: np.ndarray, scores_M: np.ndarray, num_videos: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorts proposals by video, then score descending, score ties earlier row first.

    Returns:
        ``order_M`` (indices into the inputs), ``rank_M`` (0 = best of its video, in sorted
        order) and ``count_V`` (proposals per video).
    """
    order_M = sort_by_group_and_score(video_M, scores_M)
    count_V = np.bincount(video_M, minlength=num_videos)
    start_V = np.cumsum(count_V) - count_V
    rank_M = np.arange(len(video_M)) - start_V[video_M[order_M]]
    return order_M, rank_M, count_V


def _pairs(gt_video_N: np.ndarray, kept_V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (segment, kept proposal) pair of the same video, ordered by segment then rank.

    Returns ``pair_gt_P`` (segment index) and ``pair_rank_P`` (proposal rank in its video).
    """
    pairs_N = kept_V[gt_video_N]
    pair_gt_P = np.repeat(np.arange(len(gt_video_N)), pairs_N)
    first_P = np.repeat(np.cumsum(pairs_N) - pairs_N, pairs_N)
    return pair_gt_P, np.arange(len(pair_gt_P)) - first_P


def _first_hit_TN(
    pair_gt_P: np.ndarray, pair_rank_P: np.ndarray, tiou_P: np.ndarray, tiou_T: np.ndarray, n: int
) -> np.ndarray:
    """Per threshold and segment, the rank of the best-ranked proposal that overlaps it
    enough (int64 max where none does). Pairs must be ordered by segment then rank."""
    first_TN = np.full((len(tiou_T), n), np.iinfo(np.int64).max, dtype=np.int64)
    reach_P = np.flatnonzero(tiou_P >= tiou_T.min())  # usually a small fraction of the pairs
    pair_gt_P, pair_rank_P, tiou_P = pair_gt_P[reach_P], pair_rank_P[reach_P], tiou_P[reach_P]
    for t, threshold in enumerate(tiou_T):
        hit_P = np.flatnonzero(tiou_P >= threshold)
        gt_H = pair_gt_P[hit_P]
        is_first_H = np.ones(len(hit_P), dtype=bool)
        is_first_H[1:] = gt_H[1:] != gt_H[:-1]
        first_TN[t, gt_H[is_first_H]] = pair_rank_P[hit_P[is_first_H]]
    return first_TN


def _recall_TK(first_TN: np.ndarray, gt_video_N: np.ndarray, cut_VK: np.ndarray) -> np.ndarray:
    """Recall per threshold and curve point: segment ``n`` counts at point ``k`` when its
    first hit ranks below the cut of its video, ``first_TN[t, n] < cut_VK[v, k]``.

    Each row of ``cut_VK`` is non-decreasing, so the first point where a segment counts is a
    search in that row; offsetting row ``v`` by ``v * stride`` makes all rows one sorted array
    and the search one ``searchsorted`` call.
    """
    num_videos, num_points = cut_VK.shape
    stride = int(cut_VK.max()) + 2
    flat_VK = (cut_VK + np.arange(num_videos)[:, None] * stride).ravel()
    hit_T, hit_n = np.nonzero(first_TN < np.iinfo(np.int64).max)
    video_H = gt_video_N[hit_n]
    first_point_H = (
        np.searchsorted(flat_VK, video_H * stride + first_TN[hit_T, hit_n], side="right")
        - video_H * num_points
    )
    matches_TK = np.zeros((first_TN.shape[0], num_points + 1), dtype=np.int64)
    np.add.at(matches_TK, (hit_T, first_point_H), 1)
    return np.cumsum(matches_TK[:, :num_points], axis=1) / float(first_TN.shape[1])


def average_recall_flat(
    gt_video_N: np.ndarray,
    gt_segments_N2: np.ndarray,
    prop_video_M: np.ndarray,
    prop_segments_M2: np.ndarray,
    prop_scores_M: np.ndarray,
    num_videos: int,
    max_avg_proposals: float | None = 100,
    tiou_thresholds_T: np.ndarray = TIOU_THRESHOLDS,
    total_num_proposals: int | None = None,
) -> ARANResult:
    """AR@AN from flat arrays; videos are integers in ``[0, num_videos)``.

    Args:
        gt_video_N: Video of each ground-truth segment.
        gt_segments_N2: ``[t_start, t_end]`` seconds.
        prop_video_M: Video of each proposal.
        prop_segments_M2: ``[t_start, t_end]`` seconds.
        prop_scores_M: Proposal confidence; higher ranks first.
        num_videos: Videos evaluated, including those with no proposals.
        max_avg_proposals: Average proposals per video at the curve's end (MMAction2's
            ANetMetric uses 100); ``None`` or 0 = all proposals.
        tiou_thresholds_T: Must be > 0 (a video without proposals recalls nothing).
        total_num_proposals: Proposal count that sets the per-video cut (MMAction2's
            argument); default ``M``.

    Raises:
        ValueError: no videos, no proposals or no ground-truth segment.
    """
    tiou_T = np.asarray(tiou_thresholds_T, dtype=np.float64)
    gt_video_N = np.asarray(gt_video_N, dtype=np.int64)
    prop_video_M = np.asarray(prop_video_M, dtype=np.int64)
    total = len(prop_video_M) if total_num_proposals is None else int(total_num_proposals)
    if num_videos == 0 or total == 0 or len(gt_video_N) == 0:
        raise ValueError(
            f"AR@AN needs videos, proposals and ground truth: {num_videos} videos, "
            f"{total} proposals, {len(gt_video_N)} ground-truth segments"
        )
    if not np.all(tiou_T > 0):
        raise ValueError("tIoU thresholds must be > 0")
    if not max_avg_proposals:
        max_avg_proposals = float(total) / num_videos
    ratio = max_avg_proposals * float(num_videos) / total

    order_M, rank_M, count_V = rank_within_video(prop_video_M, prop_scores_M, num_videos)
    kept_V = np.minimum((count_V * ratio).astype(np.int64), count_V)
    total_kept = int(kept_V.sum())
    if total_kept == 0:
        raise ValueError("no proposal is kept: max_avg_proposals is too small")
    # Kept proposals, contiguous per video in rank order.
    is_kept_M = rank_M < kept_V[prop_video_M[order_M]]
    kept_segments_R2 = prop_segments_M2[order_M[is_kept_M]]
    kept_start_V = np.cumsum(kept_V) - kept_V

    gt_order_N = np.argsort(gt_video_N, kind="stable")
    gt_video_N, gt_segments_N2 = gt_video_N[gt_order_N], gt_segments_N2[gt_order_N]
    pair_gt_P, pair_rank_P = _pairs(gt_video_N, kept_V)
    pair_prop_P = kept_start_V[gt_video_N[pair_gt_P]] + pair_rank_P
    tiou_P = segment_tiou_float32(kept_segments_R2[pair_prop_P], gt_segments_N2[pair_gt_P])
    first_TN = _first_hit_TN(pair_gt_P, pair_rank_P, tiou_P, tiou_T, len(gt_video_N))

    pcn_K = (
        np.arange(1, NUM_CURVE_POINTS + 1)
        / 100.0
        * (max_avg_proposals * float(num_videos) / total_kept)
    )
    cut_VK = np.minimum((kept_V[:, None] * pcn_K[None, :]).astype(np.int32), kept_V[:, None])
    recall_TK = _recall_TK(first_TN, gt_video_N, cut_VK)
    avg_recall_K = recall_TK.mean(axis=0)
    proposals_per_video_K = pcn_K * (float(total_kept) / num_videos)
    auc = 100.0 * float(np.trapezoid(avg_recall_K, proposals_per_video_K))
    auc /= proposals_per_video_K[-1]
    return ARANResult(
        recall_TK=recall_TK,
        avg_recall_K=avg_recall_K,
        proposals_per_video_K=proposals_per_video_K,
        auc=float(auc),
        tiou_thresholds_T=tiou_T,
        num_videos=int(num_videos),
        num_ground_truth=len(gt_video_N),
        num_proposals=len(prop_video_M),
    )


def _stack(arrays: list, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` columns of per-video 2-D arrays stacked as float64, and the row count
    of each (empty inputs count 0 rows)."""
    arrays = [np.asarray(a) for a in arrays]
    rows = np.array([len(a) if a.size else 0 for a in arrays], dtype=np.int64)
    parts = [np.atleast_2d(a)[:, :n] for a in arrays if a.size]
    if not parts:
        return np.zeros((0, n)), rows
    return np.concatenate(parts).astype(np.float64), rows


def average_recall_at_avg_proposals(
    ground_truth: Mapping[str, np.ndarray],
    proposals: Mapping[str, np.ndarray],
    max_avg_proposals: float | None = 100,
    tiou_thresholds_T: np.ndarray = TIOU_THRESHOLDS,
    total_num_proposals: int | None = None,
) -> ARANResult:
    """AR@AN over the videos of ``ground_truth``, as MMAction2's function of the same name.

    Args:
        ground_truth: video id -> ``(N, 2)`` segments in seconds (extra columns ignored).
        proposals: video id -> ``(M, 3)`` ``[t_start, t_end, score]``; a video missing here
            (or with ``M = 0``) has no proposals. Videos not in ``ground_truth`` are ignored.
        max_avg_proposals: See :func:`average_recall_flat`.
        tiou_thresholds_T: tIoU thresholds.
        total_num_proposals: MMAction2's argument; default: proposals of the evaluated videos.
    """
    video_ids = list(ground_truth)
    gt_N2, gt_rows_V = _stack([ground_truth[v] for v in video_ids], 2)
    props_M3, prop_rows_V = _stack([proposals.get(v, ()) for v in video_ids], 3)
    return average_recall_flat(
        gt_video_N=np.repeat(np.arange(len(video_ids)), gt_rows_V),
        gt_segments_N2=gt_N2,
        prop_video_M=np.repeat(np.arange(len(video_ids)), prop_rows_V),
        prop_segments_M2=props_M3[:, :2],
        prop_scores_M=props_M3[:, 2],
        num_videos=len(video_ids),
        max_avg_proposals=max_avg_proposals,
        tiou_thresholds_T=tiou_thresholds_T,
        total_num_proposals=total_num_proposals,
    )
