"""Batched BMN post-processing: candidate proposals, Soft-NMS and labels, on the model's device.

Reproduces MMAction2 1.2.0's ``BMN.predict`` (``mmaction/models/localizers/bmn.py``) and its
``post_processing`` / ``soft_nms`` (``mmaction/models/localizers/utils/proposal_utils.py``) for a
whole batch at once, each video with its own duration. Upstream handles one video per call with
Python loops on the CPU; here every step is a tensor operation over the batch, and Soft-NMS,
which is sequential in the proposals it keeps, runs ``top_k`` steps that each pick the best
remaining proposal of every video at once.

Conventions copied from upstream (and checked against it in tests/unit/test_postprocess.py):

* The confidence map is indexed ``[channel, duration, start]``: position ``(d, s)`` is the
  proposal from ``s / T`` to ``(s + d + 1) / T``, and only ``s + d + 1 < T`` is a candidate: a
  proposal ends at most at ``(T - 1) / T``, never at 1. Channel 0 is the regression map, 1 the
  classification map.
* Start positions are the first one, local maxima and positions above half the video's highest
  start score; end positions likewise, with the last position instead of the first.
* A candidate's score is ``start * end * cls * reg`` in float32 (that order); Soft-NMS runs in
  float64 like upstream's NumPy. Ties between exactly equal scores are the one thing not
  reproduced: upstream breaks them by NumPy's unstable sort. Upstream's loop keeps
  ``top_k + 1`` proposals and ``post_processing`` cuts to ``top_k``; the picks come in
  decreasing score, so stopping after ``top_k`` keeps the same ones.
* Segments are normalised positions times the video duration in seconds. Upstream's duration is
  not ``duration_second`` but the part of it covered by features,
  :func:`mmaction_covered_duration`; callers pass whatever duration the ``T`` positions span.

Shape legend: B videos in the batch, T temporal positions, G = T + 1 boundaries between them,
D durations of the confidence map (``D == T`` for BMN), X = D * T map entries, N candidate
proposals per video (padded), P proposals kept per video (padded, ``P <= top_k``), K action
classes (plus one background row when ``background_last``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NO_LABEL = ""  # label of class-agnostic proposals
NO_LABEL_ID = -1


def mmaction_covered_duration(
    duration_second: float, duration_frame: int, feature_extraction_interval: int = 16
) -> float:
    """The duration MMAction2's ``post_processing`` multiplies normalised segments by.

    Upstream keeps only whole feature-extraction intervals of frames:
    ``duration_frame // interval * interval / duration_frame * duration_second``.
    """
    covered_frames = duration_frame // feature_extraction_interval * feature_extraction_interval
    return float(covered_frames) / duration_frame * duration_second


@dataclass
class Proposals:
    """Top proposals of each video of a batch, best first, padded to ``P`` per video.

    Attributes:
        segments_BP2: start and end in seconds (float64).
        scores_BP: proposal confidence after Soft-NMS (float64), the order of each row.
        valid_BP: False for padding (a video with fewer than ``P`` candidates).
        positions_BP2: start and end boundary indices in ``[0, T]`` (int64): the proposal
            covers temporal positions ``start <= t < end``.
        durations_B: the durations the segments were scaled by, seconds (float64).
        labels_BP: index of the most probable action class over the proposal's span (int64),
            or None without action probabilities.
        label_scores_BP: ``score * mean probability of that class over the span`` (float64):
            the confidence of the segment-and-label pair as a detection; None without labels.
    """

    segments_BP2: torch.Tensor
    scores_BP: torch.Tensor
    valid_BP: torch.Tensor
    positions_BP2: torch.Tensor
    durations_B: torch.Tensor
    labels_BP: torch.Tensor | None = None
    label_scores_BP: torch.Tensor | None = None


def boundary_peaks(start_BT: torch.Tensor, end_BT: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Start and end positions that may bound a proposal, as upstream's ``start_bins``.

    A position qualifies when it is a strict local maximum or above half the video's maximum;
    position 0 always qualifies as a start and position ``T - 1`` as an end, while upstream's
    loop never marks position ``T - 1`` as a start nor 0 as an end.

    Returns:
        ``(start_ok_BT, end_ok_BT)`` boolean masks.
    """

    def interior(x_BT: torch.Tensor) -> torch.Tensor:
        mid_BT = x_BT[:, 1:-1]
        local_max_BT = (mid_BT > x_BT[:, 2:]) & (mid_BT > x_BT[:, :-2])
        return local_max_BT | (mid_BT > 0.5 * x_BT.max(dim=1, keepdim=True).values)

    B, T = start_BT.shape
    first_B1 = torch.zeros(B, 1, dtype=torch.bool, device=start_BT.device)
    first_B1[:, 0] = True
    start_ok_BT = torch.cat([first_B1, interior(start_BT), ~first_B1], dim=1)[:, :T]
    end_ok_BT = torch.cat([~first_B1, interior(end_BT), first_B1], dim=1)[:, -T:]
    return start_ok_BT, end_ok_BT


def candidate_proposals(
    conf_map_B2DT: torch.Tensor, start_BT: torch.Tensor, end_BT: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (start, end) pair upstream considers, compacted to the longest video's count.

    Candidates keep upstream's enumeration order (duration-major, then start).

    Returns:
        ``(start_idx_BN, end_idx_BN, score_BN, valid_BN)``: boundary indices (int64), the
        float32 score ``start * end * cls * reg`` and a mask of real (not padding) entries.
    """
    conf_map_B2DT, start_BT, end_BT = (x.float() for x in (conf_map_B2DT, start_BT, end_BT))
    B, _, D, T = conf_map_B2DT.shape
    device = start_BT.device
    start_ok_BT, end_ok_BT = boundary_peaks(start_BT, end_BT)

    start_idx_DT = torch.arange(T, device=device).expand(D, T)
    end_idx_DT = start_idx_DT + torch.arange(1, D + 1, device=device)[:, None]
    inside_DT = end_idx_DT < T
    end_idx_flat_BX = end_idx_DT.clamp(max=T - 1).reshape(1, D * T).expand(B, -1)

    end_ok_BX = end_ok_BT.gather(1, end_idx_flat_BX)
    end_score_BX = end_BT.gather(1, end_idx_flat_BX)
    valid_BX = start_ok_BT.repeat(1, D) & end_ok_BX & inside_DT.reshape(1, D * T)
    reg_BX = conf_map_B2DT[:, 0].reshape(B, D * T)
    cls_BX = conf_map_B2DT[:, 1].reshape(B, D * T)
    score_BX = start_BT.repeat(1, D) * end_score_BX * cls_BX * reg_BX

    n_max = int(valid_BX.sum(dim=1).max()) if B else 0
    order_BN = torch.argsort((~valid_BX).to(torch.uint8), dim=1, stable=True)[:, :n_max]
    start_idx_BN = start_idx_DT.reshape(-1)[order_BN]
    end_idx_BN = end_idx_DT.reshape(-1).clamp(max=T)[order_BN]  # padding stays on the grid
    return start_idx_BN, end_idx_BN, score_BX.gather(1, order_BN), valid_BX.gather(1, order_BN)


def soft_nms(
    tmin_BN: torch.Tensor,
    tmax_BN: torch.Tensor,
    score_BN: torch.Tensor,
    valid_BN: torch.Tensor,
    *,
    alpha: float,
    low_threshold: float,
    high_threshold: float,
    top_k: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Upstream's Gaussian Soft-NMS for every video of the batch at once.

    Each step picks every video's best remaining proposal, then multiplies the score of each
    remaining proposal whose IoU with it exceeds ``low + (high - low) * width`` by
    ``exp(-iou**2 / alpha)`` (``width`` is the picked proposal's normalised length).

    Args:
        tmin_BN, tmax_BN: normalised start and end, in the dtype to compute in.
        score_BN: scores, same dtype.
        valid_BN: mask of real candidates.
        alpha, low_threshold, high_threshold, top_k: upstream's ``soft_nms_*`` and
            ``post_process_top_k``.

    Returns:
        ``(index_BP, score_BP, valid_BP)``: picked candidates (indices into N) in the order
        picked, which is by decreasing score, their scores when picked, and a padding mask.
    """
    B, N = score_BN.shape
    P = min(top_k, N)
    score_BN = score_BN.masked_fill(~valid_BN, -torch.inf)  # -inf: padding or already kept
    index_BP = torch.zeros(B, P, dtype=torch.long, device=score_BN.device)
    kept_BP = torch.zeros(B, P, dtype=score_BN.dtype, device=score_BN.device)
    ramp = high_threshold - low_threshold
    for k in range(P):
        best_B1 = score_BN.argmax(dim=1, keepdim=True)
        index_BP[:, k : k + 1] = best_B1
        kept_BP[:, k : k + 1] = score_BN.gather(1, best_B1)
        score_BN.scatter_(1, best_B1, -torch.inf)
        lo_B1, hi_B1 = tmin_BN.gather(1, best_B1), tmax_BN.gather(1, best_B1)
        width_B1 = hi_B1 - lo_B1
        inter_BN = (torch.minimum(hi_B1, tmax_BN) - torch.maximum(lo_B1, tmin_BN)).clamp(min=0.0)
        iou_BN = inter_BN / (width_B1 - inter_BN + tmax_BN - tmin_BN)
        decay_BN = iou_BN > low_threshold + ramp * width_B1
        # Undecayed entries get exp(-0.0) == 1 exactly (cheaper than torch.where); the clamp
        # keeps every factor above 0 so that -inf never meets 0.
        exponent_BN = (-(iou_BN * iou_BN) / alpha * decay_BN).clamp(min=-700.0)
        score_BN = score_BN * torch.exp(exponent_BN)
    count_B1 = valid_BN.sum(dim=1, keepdim=True)
    valid_BP = torch.arange(P, device=score_BN.device) < count_B1
    kept_BP = kept_BP.masked_fill(~valid_BP, 0.0)
    return index_BP, kept_BP, valid_BP


def span_mean_probs(
    probs_BKT: torch.Tensor, start_idx_BP: torch.Tensor, end_idx_BP: torch.Tensor
) -> torch.Tensor:
    """Mean of each class's probability over positions ``start <= t < end`` of each proposal.

    Spans are clamped to hold at least one position inside ``[0, T)``.

    Returns:
        ``mean_BKP`` in float64.
    """
    B, K, T = probs_BKT.shape
    cum_BKT1 = torch.nn.functional.pad(probs_BKT.double().cumsum(dim=2), (1, 0))
    start_BP = start_idx_BP.clamp(0, T - 1)
    end_BP = torch.maximum(end_idx_BP.clamp(max=T), start_BP + 1)
    upper_BKP = cum_BKT1.gather(2, end_BP[:, None, :].expand(B, K, -1))
    lower_BKP = cum_BKT1.gather(2, start_BP[:, None, :].expand(B, K, -1))
    return (upper_BKP - lower_BKP) / (end_BP - start_BP)[:, None, :]


def label_proposals(
    probs_BKT: torch.Tensor,
    start_idx_BP: torch.Tensor,
    end_idx_BP: torch.Tensor,
    background_last: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each proposal's label: the class of highest mean probability over its span.

    Args:
        probs_BKT: per-position class probabilities (softmax over K).
        start_idx_BP, end_idx_BP: the proposals' boundary indices (positions start..end-1).
        background_last: the last row is background, never a label.

    Returns:
        ``labels_BP`` (int64) and ``probs_BP``, the label's mean probability (float64).
    """
    probs_BKT = probs_BKT[:, :-1] if background_last else probs_BKT
    best_BP = span_mean_probs(probs_BKT, start_idx_BP, end_idx_BP).max(dim=1)
    return best_BP.indices, best_BP.values


def proposal_labels(
    action_logits_KT: torch.Tensor, start_P: torch.Tensor, end_P: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`label_proposals` for one video's head logits (background last).

    Returns:
        label_P (int64, background never chosen) and prob_P (float32), the label's mean
        probability.
    """
    probs_1KT = torch.softmax(action_logits_KT.float(), dim=0)[None]
    label_1P, prob_1P = label_proposals(probs_1KT, start_P[None], end_P[None])
    return label_1P[0], prob_1P[0].float()


def batched_proposals(
    conf_map_B2DT: torch.Tensor,
    start_BT: torch.Tensor,
    end_BT: torch.Tensor,
    durations_B: torch.Tensor,
    *,
    soft_nms_alpha: float,
    soft_nms_low_threshold: float,
    soft_nms_high_threshold: float,
    top_k: int,
    action_probs_BKT: torch.Tensor | None = None,
    background_last: bool = True,
    dtype: torch.dtype = torch.float64,
) -> Proposals:
    """MMAction2 BMN's ``predict`` post-processing for a batch, each video its own duration.

    Args:
        conf_map_B2DT: BMN confidence map, channel 0 regression, channel 1 classification.
        start_BT, end_BT: boundary probabilities.
        durations_B: seconds spanned by each video's T positions (for upstream parity, see
            :func:`mmaction_covered_duration`).
        soft_nms_alpha, soft_nms_low_threshold, soft_nms_high_threshold: upstream's Soft-NMS
            parameters (0.4, 0.5, 0.9 in its BMN configs).
        top_k: proposals kept per video (upstream's ``post_process_top_k``, 100).
        action_probs_BKT: per-position class probabilities; when given, each proposal gets a
            label and a label score.
        background_last: the last row of ``action_probs_BKT`` is background, never a label.
        dtype: dtype of Soft-NMS and the outputs; float64 matches upstream's NumPy.

    Returns:
        The proposals, on the inputs' device, best first.
    """
    start_idx_BN, end_idx_BN, score_BN, valid_BN = candidate_proposals(
        conf_map_B2DT, start_BT, end_BT
    )
    T = start_BT.shape[1]
    # Upstream's i / T, from Python: CUDA divides a tensor by a scalar through its reciprocal,
    # one ulp off, which flips Soft-NMS threshold tests that upstream decides at exact equality.
    grid_G = torch.tensor([i / T for i in range(T + 1)], dtype=dtype, device=start_BT.device)
    tmin_BN, tmax_BN = grid_G[start_idx_BN], grid_G[end_idx_BN]
    index_BP, scores_BP, valid_BP = soft_nms(
        tmin_BN,
        tmax_BN,
        score_BN.to(dtype),
        valid_BN,
        alpha=soft_nms_alpha,
        low_threshold=soft_nms_low_threshold,
        high_threshold=soft_nms_high_threshold,
        top_k=top_k,
    )
    durations_B = durations_B.to(device=scores_BP.device, dtype=dtype)
    tmin_BP = tmin_BN.gather(1, index_BP).clamp(min=0.0)
    tmax_BP = tmax_BN.gather(1, index_BP).clamp(max=1.0)
    segments_BP2 = torch.stack([tmin_BP, tmax_BP], dim=2) * durations_B[:, None, None]
    positions_BP2 = torch.stack(
        [start_idx_BN.gather(1, index_BP), end_idx_BN.gather(1, index_BP)], 2
    )
    proposals = Proposals(segments_BP2, scores_BP, valid_BP, positions_BP2, durations_B)
    if action_probs_BKT is not None:
        labels_BP, probs_BP = label_proposals(
            action_probs_BKT, positions_BP2[..., 0], positions_BP2[..., 1], background_last
        )
        proposals.labels_BP = labels_BP
        proposals.label_scores_BP = scores_BP * probs_BP.to(dtype)
    return proposals


def to_columns(
    proposals: Proposals, video_ids: list[str], class_names: list[str] | None = None
) -> dict[str, np.ndarray]:
    """The valid proposals as columns of ``core.io.tables.PROPOSALS_SCHEMA``.

    The caller adds ``uri``, ``run_id`` and ``model``. Class-agnostic proposals (no labels) get label
    ``""``, label_id -1 and label_score equal to their score.

    Args:
        proposals: output of :func:`batched_proposals`.
        video_ids: one id per video of the batch.
        class_names: names of the action classes, indexed by label id (needed with labels).

    Returns:
        Columns ``video_id, t_start, t_end, score, label, label_id, label_score, rank,
        video_duration_s`` as NumPy arrays, videos in batch order, each video best first.
    """
    valid_BP = proposals.valid_BP.cpu().numpy()
    b_idx, p_idx = np.nonzero(valid_BP)
    segments = proposals.segments_BP2.cpu().numpy()[b_idx, p_idx]
    scores = proposals.scores_BP.cpu().numpy()[b_idx, p_idx]
    if proposals.labels_BP is None:
        label_ids = np.full(len(b_idx), NO_LABEL_ID, dtype=np.int32)
        labels = np.full(len(b_idx), NO_LABEL, dtype=object)
        label_scores = scores
    else:
        if class_names is None:
            raise ValueError("class_names are required for labelled proposals")
        label_ids = proposals.labels_BP.cpu().numpy()[b_idx, p_idx].astype(np.int32)
        labels = np.asarray(class_names, dtype=object)[label_ids]
        label_scores = proposals.label_scores_BP.cpu().numpy()[b_idx, p_idx]
    return {
        "video_id": np.asarray(video_ids, dtype=object)[b_idx],
        "t_start": segments[:, 0].astype(np.float64),
        "t_end": segments[:, 1].astype(np.float64),
        "score": scores.astype(np.float32),
        "label": labels,
        "label_id": label_ids,
        "label_score": label_scores.astype(np.float32),
        "rank": p_idx.astype(np.int32),
        "video_duration_s": proposals.durations_B.cpu().numpy()[b_idx].astype(np.float64),
    }
