"""BMN training targets and losses, batched in torch on the model's device.

:func:`bmn_targets` equals MMAction2's ``BMN.generate_labels`` (mmaction2 1.2.0, numpy loops
on the CPU, one video at a time) and :func:`bmn_loss` equals its ``BMNLoss``; both take a
padded batch of ground truth so that several, overlapping segments per video work. The
arithmetic follows upstream's dtypes step by step (float64 IoU maps; start/end intervals in
the ground truth's own dtype, as upstream's torch ops on ``gt_bbox`` do), so that targets that
land exactly on a threshold (grid-aligned segments give IoP 0.5 exactly) fall on the same side.
MMAction2's data pipeline hands ``gt_bbox`` over as float64; pass float64 for the same targets.

:func:`action_targets` and :func:`action_cls_loss` train the per-position action-class head of
:class:`core.models.bmn_cls.BMNwActionCls`.

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
import torch.nn.functional as F


class BMNTargets(NamedTuple):
    """Training targets for one batch.

    Attributes:
        iou_map_BDT: max IoU of each proposal cell with the ground truth (``label_confidence``).
        start_BT: start-boundary target (``label_start``).
        end_BT: end-boundary target (``label_end``).
        action_BT: int64 class per position, K for background; None without an action head.
    """

    iou_map_BDT: torch.Tensor
    start_BT: torch.Tensor
    end_BT: torch.Tensor
    action_BT: torch.Tensor | None = None


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


def bmn_targets(
    gt_BG2: torch.Tensor,
    gt_valid_BG: torch.Tensor | None,
    temporal_dim: int,
    gt_labels_BG: torch.Tensor | None = None,
    num_classes: int = 0,
) -> BMNTargets:
    """All training targets of a batch; equals MMAction2's ``BMN.generate_labels``.

    Args:
        gt_BG2: normalized [start, end] per segment (MMAction2's ``gt_bbox``), padded.
        gt_valid_BG: which entries are real segments (None: all).
        temporal_dim: T.
        gt_labels_BG: class ids (-1 padding); with ``num_classes`` > 0 the action targets.
        num_classes: K action classes (0: no action targets).
    """
    if gt_valid_BG is None:
        gt_valid_BG = torch.ones(gt_BG2.shape[:2], dtype=torch.bool, device=gt_BG2.device)
    iou_BDT = proposal_iou_map(gt_BG2, gt_valid_BG, temporal_dim)
    start_BT, end_BT = boundary_targets(gt_BG2, gt_valid_BG, temporal_dim)
    action_BT = None
    if num_classes > 0:
        if gt_labels_BG is None:
            raise ValueError("an action head needs gt_labels_BG")
        action_BT = action_targets(gt_BG2, gt_valid_BG, gt_labels_BG, temporal_dim, num_classes)
    return BMNTargets(iou_BDT, start_BT, end_BT, action_BT)


def _balance_coefs(
    pmask: torch.Tensor, num_entries: torch.Tensor | int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream's negative and positive weights from the clamped entries/positives ratio."""
    num_positive = pmask.sum().clamp(min=1)
    ratio = (num_entries / num_positive).clamp(1.05, 21)
    coef_0 = 0.5 * ratio / (ratio - 1)
    coef_1 = 0.5 * ratio
    return coef_0, coef_1


def binary_logistic_loss(
    score: torch.Tensor, label: torch.Tensor, threshold: float = 0.5
) -> torch.Tensor:
    """MMAction2's ``binary_logistic_regression_loss`` without host synchronisation."""
    score, label = score.reshape(-1), label.reshape(-1).to(score.device)
    pmask = (label > threshold).float()
    coef_0, coef_1 = _balance_coefs(pmask, label.numel())
    loss = coef_1 * pmask * torch.log(score + 1e-5) + coef_0 * (1.0 - pmask) * torch.log(
        1.0 - score + 1e-5
    )
    return -loss.mean()


def pem_reg_loss(
    pred_BDT: torch.Tensor,
    iou_BDT: torch.Tensor,
    mask_DT: torch.Tensor,
    high: float = 0.7,
    low: float = 0.3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """MMAction2's ``BMNLoss.pem_reg_loss``: MSE on all high-IoU cells and random samples of
    the medium and low ones (as many as high ones, in expectation).

    The two uniform draws happen in upstream's order and shape, from ``generator`` or the
    device's default generator, so a seeded run draws what MMAction2 draws. Upstream's edge
    cases stay (no medium cells: every cell gets sampled; no high cells: none).
    """

    def draw() -> torch.Tensor:
        return torch.rand(
            iou_BDT.shape, generator=generator, dtype=iou_BDT.dtype, device=iou_BDT.device
        )

    u_hmask = (iou_BDT > high).float()
    u_mmask = ((iou_BDT <= high) & (iou_BDT > low)).float()
    u_lmask = ((iou_BDT <= low) & (iou_BDT > 0.0)).float() * mask_DT
    num_h = u_hmask.sum()
    r_m = num_h / u_mmask.sum()
    u_smmask = ((u_mmask * draw()) > (1.0 - r_m)).float()
    r_l = num_h / u_lmask.sum()
    u_slmask = ((u_lmask * draw()) > (1.0 - r_l)).float()
    weights = u_hmask + u_smmask + u_slmask
    mse = F.mse_loss(pred_BDT * weights, iou_BDT * weights)
    return 0.5 * mse * weights.numel() / weights.sum()


def pem_cls_loss(
    pred_BDT: torch.Tensor, iou_BDT: torch.Tensor, mask_DT: torch.Tensor, threshold: float = 0.9
) -> torch.Tensor:
    """MMAction2's ``BMNLoss.pem_cls_loss`` (class-balanced BCE, positives IoU > 0.9)."""
    pmask = (iou_BDT > threshold).float()
    nmask = (iou_BDT <= threshold).float() * mask_DT
    num_entries = pmask.sum().clamp(min=1) + nmask.sum()
    coef_0, coef_1 = _balance_coefs(pmask, num_entries)
    loss_pos = coef_1 * torch.log(pred_BDT + 1e-5) * pmask
    loss_neg = coef_0 * torch.log(1.0 - pred_BDT + 1e-5) * nmask
    return -(loss_pos + loss_neg).sum() / num_entries


def bmn_loss(
    conf_B2DT: torch.Tensor,
    start_BT: torch.Tensor,
    end_BT: torch.Tensor,
    targets: BMNTargets,
    bm_mask_DT: torch.Tensor,
    weight_tem: float = 1.0,
    weight_pem_reg: float = 10.0,
    weight_pem_cls: float = 1.0,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """MMAction2's ``BMNLoss`` on a batch.

    Args:
        conf_B2DT: confidence maps, channel 0 regression, 1 classification.
        start_BT, end_BT: boundary probabilities.
        targets: from :func:`bmn_targets`.
        bm_mask_DT: 1 where s + d < T.
        weight_tem, weight_pem_reg, weight_pem_cls: upstream's weights.
        generator: for the PEM regression sampling (None: the default generator).

    Returns:
        ``bmn`` (the weighted sum, upstream's ``loss``), ``tem``, ``pem_reg``, ``pem_cls``.
    """
    iou_BDT = targets.iou_map_BDT * bm_mask_DT
    reg = pem_reg_loss(conf_B2DT[:, 0].contiguous(), iou_BDT, bm_mask_DT, generator=generator)
    cls = pem_cls_loss(conf_B2DT[:, 1].contiguous(), iou_BDT, bm_mask_DT)
    tem = binary_logistic_loss(start_BT, targets.start_BT) + binary_logistic_loss(
        end_BT, targets.end_BT
    )
    total = weight_tem * tem + weight_pem_reg * reg + weight_pem_cls * cls
    return {"bmn": total, "tem": tem, "pem_reg": reg, "pem_cls": cls}


def action_cls_loss(
    logits_BKT: torch.Tensor, action_BT: torch.Tensor, background_weight: float = 1.0
) -> torch.Tensor:
    """Cross-entropy of the per-position action head, averaged over positions.

    Args:
        logits_BKT: K + 1 logits per position (background last).
        action_BT: targets from :func:`action_targets`.
        background_weight: weight of the background class; below 1 counters background
            dominance. The mean is weighted (``F.cross_entropy``'s convention).
    """
    weight = None
    if background_weight != 1.0:
        weight = torch.ones(logits_BKT.shape[1], device=logits_BKT.device)
        weight[-1] = background_weight
    return F.cross_entropy(logits_BKT.float(), action_BT, weight=weight)
