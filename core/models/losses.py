"""BMN's losses and the action head's, batched in torch, without host synchronisation.

:func:`bmn_loss` equals MMAction2 1.2.0's ``BMNLoss`` (``mmaction/models/losses/bmn_loss.py``)
on a batch: the temporal evaluation loss (class-balanced logistic loss on the start and end
probabilities), the proposal evaluation losses (sampled MSE on the regression map, balanced
BCE on the classification map) and upstream's weights 1, 10, 1. :func:`action_cls_loss`
trains the action-classification head of :class:`core.models.network.BMNNet`.

Shape legend:
    B: batch; T: temporal positions (start index s); D: duration index d (== T); K: logits
    of the action head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.models.targets import BMNTargets


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
    cases stay (no medium cells: every cell gets sampled; no high cells: none), except one: a
    batch with no cell sampled at all (no high cells, e.g. videos without ground truth) has
    loss 0, where upstream divides 0 by 0 and its NaN ruins every weight at the next step.
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
    return 0.5 * mse * weights.numel() / weights.sum().clamp(min=1.0)


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
