"""The action-classification head of :class:`core.models.bmn.BMNwActionCls`.

``pointwise`` is the head of the lecture BMNwActionCls comes from: ``Conv1d(feat_dim, K + 1,
1)`` on the input features, one softmax over the K action classes and background per
temporal position. Its parameters are ``x_1d_cls.weight`` / ``x_1d_cls.bias`` in the model's
state_dict.

Shape legend: B batch, C input channels (feat_dim), T positions, K + 1 logits (background
last).
"""

from __future__ import annotations

from torch import nn

HEAD_KINDS = ("pointwise",)


class PointwiseActionHead(nn.Conv1d):
    """Per-position logits ``(B, K + 1, T)`` from the features alone (no temporal context)."""

    def __init__(self, feat_dim: int, num_classes: int) -> None:
        super().__init__(feat_dim, num_classes + 1, 1)


def build_action_head(kind: str, feat_dim: int, num_classes: int) -> nn.Module:
    """The head of ``kind`` (one of :data:`HEAD_KINDS`) for K = ``num_classes`` classes."""
    if kind == "pointwise":
        return PointwiseActionHead(feat_dim, num_classes)
    raise ValueError(f"cls_head must be one of {list(HEAD_KINDS)}, got {kind!r}")
