"""The action-classification heads of :class:`core.models.network.BMNNet` (``cls_head``).

A head maps the network's features to a per-position output ``head_BXT`` (what
``BMNOutputs.action_BXT`` holds), gives each proposal a probability per action class from it
(:meth:`proposal_probs`), and has its own training loss (:meth:`loss`). Its parameters live
under ``x_1d_cls.`` in the model's state_dict.

* ``pointwise``: the head of the lecture BMNwActionCls comes from: ``Conv1d(feat_dim, K + 1,
  1)`` on the raw input features, a softmax over K classes and background per position,
  trained by per-position cross-entropy (:func:`core.models.targets.action_targets`); a
  proposal's class probabilities are the mean softmax over its span, background dropped.
  Parameters ``x_1d_cls.weight`` / ``x_1d_cls.bias``, as before.
* ``temporal``: the same per-position classification with temporal context, as a branch of
  BMN's temporal trunk like its start and end heads (two ``Conv1d(k=3)`` + ReLU on
  ``x_1d_b``'s features, then a 1x1 classifier).
* ``span``: a proposal-level classifier. The input features are standardised per channel
  (``BatchNorm1d``: extractor features, e.g. pooled activations of a ReLU network, have
  channel means far larger than their variation over time, which a linear layer on raw
  features learns only slowly), then each proposal [s, e) is described by the mean of the
  features inside it minus the mean outside it (what changed while the action ran, against
  the video's own background) and their standard deviation inside it (motion), and a linear
  layer over that descriptor gives K logits. It is trained on every proposal cell that
  overlaps a ground-truth segment by tIoU >= ``cls_iou_threshold``, towards that segment's
  class (:func:`core.models.targets.proposal_class_map`): the question it answers in
  training is the one it is asked at inference. Descriptors come from prefix sums, so any
  number of proposals costs two gathers.

Shape legend: B batch, C input channels (feat_dim), H trunk channels (hidden_dim_1d), T
positions, K action classes (K + 1 logits with background last), P proposals per video, X the
head's per-position output channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.models.postprocess import span_mean_probs

HEAD_KINDS = ("pointwise", "temporal", "span")


class PositionHead:
    """Shared behaviour of the per-position heads (a mixin of their ``nn.Module``): softmax
    over K + 1 per position, mean over a span."""

    uses_trunk = False
    background_weight = 1.0

    def proposal_probs(
        self, head_BXT: torch.Tensor, start_BP: torch.Tensor, end_BP: torch.Tensor
    ) -> torch.Tensor:
        """Mean softmax over each span of the K action classes (background dropped).

        Returns:
            probs_BKP, float64.
        """
        probs_BXT = torch.softmax(head_BXT.float(), dim=1)[:, :-1]
        return span_mean_probs(probs_BXT, start_BP, end_BP)

    def loss(self, head_BXT: torch.Tensor, targets) -> torch.Tensor:
        """Per-position cross-entropy, background weighted by ``background_weight``."""
        from core.models.losses import action_cls_loss

        if targets.action_BT is None:
            raise ValueError("the action head needs per-position action targets")
        return action_cls_loss(head_BXT, targets.action_BT, self.background_weight)


class PointwiseActionHead(PositionHead, nn.Conv1d):
    """Per-position logits ``(B, K + 1, T)`` from the input features alone (the lecture's).

    A ``Conv1d`` itself, so that its parameters keep the names ``x_1d_cls.weight`` / ``.bias``.
    """

    def __init__(self, feat_dim: int, num_classes: int) -> None:
        nn.Conv1d.__init__(self, feat_dim, num_classes + 1, 1)

    def forward(self, feats_BCT: torch.Tensor, trunk_BHT: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(feats_BCT, self.weight, self.bias).float()


class TemporalActionHead(PositionHead, nn.Module):
    """Per-position logits ``(B, K + 1, T)`` from BMN's temporal trunk (``x_1d_b``)."""

    uses_trunk = True

    def __init__(self, trunk_channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        H = trunk_channels
        self.layers = nn.Sequential(
            nn.Conv1d(H, H, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv1d(H, H, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv1d(H, num_classes + 1, kernel_size=1),
        )

    def forward(self, feats_BCT: torch.Tensor, trunk_BHT: torch.Tensor) -> torch.Tensor:
        return self.layers(trunk_BHT).float()


class SpanActionHead(nn.Module):
    """A linear classifier of each proposal's contrast-and-motion descriptor (see above)."""

    def __init__(
        self, feat_dim: int, num_classes: int, dropout: float = 0.0, iou_threshold: float = 0.5
    ) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(feat_dim)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * feat_dim, num_classes)
        self.iou_threshold = iou_threshold

    def forward(self, feats_BCT: torch.Tensor, trunk_BHT: torch.Tensor) -> torch.Tensor:
        """The standardised features ``(B, C, T)``, float32: what spans are pooled over."""
        return self.norm(feats_BCT.float())

    def logits(
        self, head_BCT: torch.Tensor, start_BP: torch.Tensor, end_BP: torch.Tensor
    ) -> torch.Tensor:
        """K logits per proposal ``(B, P, K)``; spans hold at least one position."""
        B, C, T = head_BCT.shape
        x_BCT = head_BCT.float()
        start_BP = start_BP.clamp(0, T - 1)
        end_BP = torch.maximum(end_BP.clamp(max=T), start_BP + 1)
        cum_BCT1 = F.pad(x_BCT.cumsum(dim=2), (1, 0))
        cum2_BCT1 = F.pad((x_BCT * x_BCT).cumsum(dim=2), (1, 0))

        def span_sum(cum: torch.Tensor) -> torch.Tensor:
            hi = cum.gather(2, end_BP[:, None, :].expand(B, C, -1))
            lo = cum.gather(2, start_BP[:, None, :].expand(B, C, -1))
            return hi - lo

        n_in_B1P = (end_BP - start_BP)[:, None, :].float()
        n_out_B1P = (T - n_in_B1P).clamp(min=1.0)
        sum_in_BCP, sum2_in_BCP = span_sum(cum_BCT1), span_sum(cum2_BCT1)
        mean_in_BCP = sum_in_BCP / n_in_B1P
        mean_out_BCP = (cum_BCT1[:, :, -1:] - sum_in_BCP) / n_out_B1P
        var_in_BCP = (sum2_in_BCP / n_in_B1P - mean_in_BCP**2).clamp(min=0.0)
        desc_BP_2C = torch.cat([mean_in_BCP - mean_out_BCP, var_in_BCP.add(1e-6).sqrt()], 1)
        return self.fc(self.dropout(desc_BP_2C.transpose(1, 2)))

    def proposal_probs(
        self, head_BCT: torch.Tensor, start_BP: torch.Tensor, end_BP: torch.Tensor
    ) -> torch.Tensor:
        """Softmax over the K classes of each proposal's logits; probs_BKP, float64."""
        return torch.softmax(self.logits(head_BCT, start_BP, end_BP).double(), dim=2).transpose(
            1, 2
        )

    def loss(self, head_BCT: torch.Tensor, targets) -> torch.Tensor:
        """Cross-entropy over the proposal cells that match a ground-truth segment.

        Every proposal cell (s + d < T: the only ones that can match) is classified and the
        unmatched ones are masked out of the mean, so no shape depends on the data: no host
        synchronisation, and the training step can be captured as a CUDA graph.
        """
        if targets.cell_class_BDT is None:
            raise ValueError("the span head needs proposal_class_map targets")
        class_BDT = targets.cell_class_BDT
        B, T = class_BDT.shape[0], class_BDT.shape[2]
        s_V, d_V = self._proposal_cells(T, class_BDT.device)
        class_BV = class_BDT[:, d_V, s_V]
        start_BV, end_BV = s_V.expand(B, -1), (s_V + d_V + 1).expand(B, -1)
        logits_BKV = self.logits(head_BCT, start_BV, end_BV).transpose(1, 2)
        matched_BV = class_BV >= 0
        ce_BV = F.cross_entropy(logits_BKV, class_BV.clamp(min=0), reduction="none")
        return (ce_BV * matched_BV).sum() / matched_BV.sum().clamp(min=1)

    def _proposal_cells(self, T: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Start s and duration index d of the T(T+1)/2 cells with s + d < T (cached)."""
        cache = self.__dict__.setdefault("_cells", {})
        key = (T, str(device))
        if key not in cache:
            s_V, end_V = torch.triu_indices(T, T, device=device)  # end = s + d
            cache[key] = (s_V, end_V - s_V)
        return cache[key]


def build_action_head(
    kind: str,
    feat_dim: int,
    trunk_channels: int,
    num_classes: int,
    dropout: float = 0.0,
    background_weight: float = 1.0,
    iou_threshold: float = 0.5,
) -> nn.Module:
    """The head of ``kind`` (one of :data:`HEAD_KINDS`) for K = ``num_classes`` classes."""
    if kind == "pointwise":
        head = PointwiseActionHead(feat_dim, num_classes)
    elif kind == "temporal":
        head = TemporalActionHead(trunk_channels, num_classes, dropout)
    elif kind == "span":
        return SpanActionHead(feat_dim, num_classes, dropout, iou_threshold)
    else:
        raise ValueError(f"cls_head must be one of {list(HEAD_KINDS)}, got {kind!r}")
    head.background_weight = background_weight
    return head
