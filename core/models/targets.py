"""BMN training targets, batched in torch on the model's device.

:func:`bmn_targets` equals MMAction2's ``BMN.generate_labels`` (mmaction2 1.2.0, numpy loops
on the CPU, one video at a time) and takes a padded batch of ground truth
(:func:`pad_ground_truth`), so that several, overlapping segments per video work. The
arithmetic follows upstream's dtypes step by step (float64 IoU maps; start/end intervals in
the ground truth's own dtype, as upstream's torch ops on ``gt_bbox`` do), so that targets that
land exactly on a threshold (grid-aligned segments give IoP 0.5 exactly) fall on the same side.
MMAction2's data pipeline hands ``gt_bbox`` over as float64; pass float64 for the same targets.

:func:`action_targets` gives the per-position classes the action head
(:mod:`core.models.heads`) trains towards. The losses on these targets are in
:mod:`core.models.losses`.

Position convention (MMAction2's): position t of T stands for the interval [t/T, (t+1)/T]; the
confidence-map cell (d, s) is the proposal [s/T, (s+d+1)/T], covering positions s..s+d; the
start/end targets of position t come from the anchor [(t-0.5)/T, (t+1.5)/T] (centred on the
position, two positions wide) against the ground-truth boundary widened by 1.5/T each side.

Shape legend:
    B: batch; G: ground-truth segments per video (padded); T: temporal positions (start
    index s); D: duration index d (== T); K: action classes (K + 1 logits, background = K).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch


class BMNTargets(NamedTuple):
    """Training targets for one batch.

    Attributes:
        iou_map_BDT: max IoU of each proposal cell with the ground truth (``label_confidence``).
        start_BT: start-boundary target (``label_start``).
        end_BT: end-boundary target (``label_end``).
        action_BT: int64 class per position, K for background; None without an action head.
        cell_class_BDT: int64 class of the segment each proposal cell matches (-1: none);
            None unless asked for (the ``span`` head's targets).
    """

    iou_map_BDT: torch.Tensor
    start_BT: torch.Tensor
    end_BT: torch.Tensor
    action_BT: torch.Tensor | None = None
    cell_class_BDT: torch.Tensor | None = None


def pad_ground_truth(
    segments: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor] | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stacks per-video ground truth into padded tensors.

    Args:
        segments: per video a (G_i, 2) tensor or array of normalized [start, end]
            (``gt_bbox``).
        labels: per video a (G_i,) int tensor or array of class ids, or None (all -1).
        device: where the result goes (default: that of the first segment).

    Returns:
        gt_BG2 (dtype of the first segment tensor, padding 0), gt_valid_BG (bool),
        gt_labels_BG (int64, padding -1).
    """
    B = len(segments)
    G = max([len(s) for s in segments], default=0)
    first = torch.as_tensor(segments[0]) if B else torch.zeros(0, 2, dtype=torch.float64)
    dtype, build_on = first.dtype, first.device  # one transfer at the end, not one per video
    gt_BG2 = torch.zeros(B, G, 2, dtype=dtype, device=build_on)
    valid_BG = torch.zeros(B, G, dtype=torch.bool, device=build_on)
    labels_BG = torch.full((B, G), -1, dtype=torch.int64, device=build_on)
    for b, seg_G2 in enumerate(segments):
        n = len(seg_G2)
        gt_BG2[b, :n] = torch.as_tensor(seg_G2).reshape(n, 2).to(build_on, dtype)
        valid_BG[b, :n] = True
        if labels is not None:
            labels_BG[b, :n] = torch.as_tensor(labels[b]).reshape(n).to(build_on, torch.int64)
    if device is not None:
        gt_BG2, valid_BG, labels_BG = (t.to(device) for t in (gt_BG2, valid_BG, labels_BG))
    return gt_BG2, valid_BG, labels_BG


def proposal_iou_map(
    gt_BG2: torch.Tensor, gt_valid_BG: torch.Tensor, temporal_dim: int
) -> torch.Tensor:
    """Max IoU of every proposal cell (d, s) with a video's segments (float64 as upstream).

    Returns:
        iou_BDT: float32, 0 for a video without segments.
    """
    B, G, _ = gt_BG2.shape
    T = temporal_dim
    gap = 1.0 / T
    tmin_DT = (torch.arange(T, dtype=torch.float64, device=gt_BG2.device) * gap).expand(T, T)
    dur_D1 = (torch.arange(1, T + 1, dtype=torch.float64, device=gt_BG2.device) * gap)[:, None]
    tmax_DT = tmin_DT + dur_D1
    len_DT = tmax_DT - tmin_DT
    gt64_BG2 = gt_BG2.to(torch.float64)
    iou_BDT = torch.zeros(B, T, T, dtype=torch.float32, device=gt_BG2.device)
    for g in range(G):  # a running max keeps memory at one (B, D, T) map
        gmin_B11, gmax_B11 = gt64_BG2[:, g, 0, None, None], gt64_BG2[:, g, 1, None, None]
        inter_BDT = (torch.minimum(tmax_DT, gmax_B11) - torch.maximum(tmin_DT, gmin_B11)).clamp(
            min=0.0
        )
        union_BDT = len_DT - inter_BDT + gmax_B11 - gmin_B11
        iou_g_BDT = (inter_BDT / union_BDT).float()
        iou_g_BDT = torch.where(gt_valid_BG[:, g, None, None], iou_g_BDT, 0.0)
        iou_BDT = torch.maximum(iou_BDT, iou_g_BDT)
    return iou_BDT


def boundary_targets(
    gt_BG2: torch.Tensor, gt_valid_BG: torch.Tensor, temporal_dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Start and end targets: max IoP of each position's anchor with a widened boundary.

    Returns:
        start_BT, end_BT: float32, 0 for a video without segments.
    """
    T = temporal_dim
    gap = 1.0 / T
    pos_T = torch.arange(T, dtype=torch.float64, device=gt_BG2.device)
    anchor_min_T, anchor_max_T = gap * (pos_T + -0.5), gap * (pos_T + 1.5)
    anchor_len_T = anchor_max_T - anchor_min_T
    # upstream: np.maximum(python float, gt-dtype array) rounds the anchor to the gt dtype
    amin_11T, amax_11T = (a.to(gt_BG2.dtype)[None, None] for a in (anchor_min_T, anchor_max_T))
    pad = 3 * (1.0 / T)
    out = []
    for col in (0, 1):
        bound_BG = gt_BG2[:, :, col]
        lo_BG1, hi_BG1 = (bound_BG - pad / 2)[..., None], (bound_BG + pad / 2)[..., None]
        inter_BGT = (torch.minimum(amax_11T, hi_BG1) - torch.maximum(amin_11T, lo_BG1)).clamp(
            min=0.0
        )
        iop_BGT = inter_BGT.to(torch.float64) / anchor_len_T
        iop_BGT = torch.where(gt_valid_BG[..., None], iop_BGT, 0.0)
        out.append(iop_BGT.amax(dim=1).float() if gt_BG2.shape[1] else iop_BGT.sum(1).float())
    return out[0], out[1]


def action_targets(
    gt_BG2: torch.Tensor,
    gt_valid_BG: torch.Tensor,
    gt_labels_BG: torch.Tensor,
    temporal_dim: int,
    num_classes: int,
) -> torch.Tensor:
    """Per-position class targets for the action head.

    Position t (interval [t/T, (t+1)/T]) takes the label of a segment that covers its centre
    (t + 0.5)/T (start <= centre < end); a segment too short to cover any centre still marks
    the position that holds its midpoint. Where several segments qualify, the shortest wins
    (it is the most specific; ties go to the first). Positions no segment marks, and segments
    with label -1, give background.

    Returns:
        action_BT: int64 in [0, K], K = ``num_classes`` meaning background.
    """
    T = temporal_dim
    if gt_BG2.shape[1] == 0:
        return torch.full(
            (gt_BG2.shape[0], T), num_classes, dtype=torch.int64, device=gt_BG2.device
        )
    pos_T = torch.arange(T, device=gt_BG2.device)
    center_11T = ((pos_T.to(torch.float64) + 0.5) / T)[None, None]
    gt64_BG2 = gt_BG2.to(torch.float64)
    start_BG1, end_BG1 = gt64_BG2[..., 0, None], gt64_BG2[..., 1, None]
    mid_pos_BG1 = ((start_BG1 + end_BG1) / 2 * T).floor().clamp(0, T - 1).long()
    marks_BGT = ((start_BG1 <= center_11T) & (center_11T < end_BG1)) | (mid_pos_BG1 == pos_T)
    marks_BGT &= (gt_valid_BG & (gt_labels_BG >= 0))[..., None]
    length_BGT = torch.where(marks_BGT, end_BG1 - start_BG1, torch.inf)
    best_BT = length_BGT.argmin(dim=1)
    label_BT = gt_labels_BG.gather(1, best_BT)
    return torch.where(marks_BGT.any(dim=1), label_BT, num_classes)


def proposal_class_map(
    gt_BG2: torch.Tensor,
    gt_valid_BG: torch.Tensor,
    gt_labels_BG: torch.Tensor,
    temporal_dim: int,
    min_iou: float,
) -> torch.Tensor:
    """The class of the segment each proposal cell (d, s) overlaps most, where that tIoU is at
    least ``min_iou`` and the cell is a proposal (s + d < T); -1 elsewhere. Ties go to the
    first segment.

    Returns:
        class_BDT: int64.
    """
    B, G, _ = gt_BG2.shape
    T = temporal_dim
    pos = torch.arange(T, dtype=torch.float64, device=gt_BG2.device)
    tmin_DT = (pos / T).expand(T, T)
    tmax_DT = tmin_DT + ((pos + 1) / T)[:, None]
    best_BDT = torch.full((B, T, T), -1.0, dtype=torch.float64, device=gt_BG2.device)
    class_BDT = torch.full((B, T, T), -1, dtype=torch.int64, device=gt_BG2.device)
    gt64_BG2 = gt_BG2.to(torch.float64)
    for g in range(G):
        gmin_B11, gmax_B11 = gt64_BG2[:, g, 0, None, None], gt64_BG2[:, g, 1, None, None]
        inter_BDT = (torch.minimum(tmax_DT, gmax_B11) - torch.maximum(tmin_DT, gmin_B11)).clamp(
            min=0.0
        )
        iou_BDT = inter_BDT / (tmax_DT - tmin_DT - inter_BDT + gmax_B11 - gmin_B11)
        ok_B11 = (gt_valid_BG[:, g] & (gt_labels_BG[:, g] >= 0))[:, None, None]
        better_BDT = ok_B11 & (iou_BDT >= min_iou) & (iou_BDT > best_BDT)
        best_BDT = torch.where(better_BDT, iou_BDT, best_BDT)
        class_BDT = torch.where(better_BDT, gt_labels_BG[:, g, None, None], class_BDT)
    inside_DT = (
        torch.arange(T, device=gt_BG2.device)[:, None] + torch.arange(T, device=gt_BG2.device)
    ) < T
    return torch.where(inside_DT, class_BDT, -1)


def bmn_targets(
    gt_BG2: torch.Tensor,
    gt_valid_BG: torch.Tensor | None,
    temporal_dim: int,
    gt_labels_BG: torch.Tensor | None = None,
    num_classes: int = 0,
    cell_min_iou: float | None = None,
) -> BMNTargets:
    """All training targets of a batch; equals MMAction2's ``BMN.generate_labels``.

    Args:
        gt_BG2: normalized [start, end] per segment (MMAction2's ``gt_bbox``), padded.
        gt_valid_BG: which entries are real segments (None: all).
        temporal_dim: T.
        gt_labels_BG: class ids (-1 padding); with ``num_classes`` > 0 the action targets.
        num_classes: K action classes (0: no action targets).
        cell_min_iou: with action targets, also :func:`proposal_class_map` at this tIoU.
    """
    if gt_valid_BG is None:
        gt_valid_BG = torch.ones(gt_BG2.shape[:2], dtype=torch.bool, device=gt_BG2.device)
    iou_BDT = proposal_iou_map(gt_BG2, gt_valid_BG, temporal_dim)
    start_BT, end_BT = boundary_targets(gt_BG2, gt_valid_BG, temporal_dim)
    action_BT = cell_class_BDT = None
    if num_classes > 0:
        if gt_labels_BG is None:
            raise ValueError("an action head needs gt_labels_BG")
        action_BT = action_targets(gt_BG2, gt_valid_BG, gt_labels_BG, temporal_dim, num_classes)
        if cell_min_iou is not None:
            cell_class_BDT = proposal_class_map(
                gt_BG2, gt_valid_BG, gt_labels_BG, temporal_dim, cell_min_iou
            )
    return BMNTargets(iou_BDT, start_BT, end_BT, action_BT, cell_class_BDT)
