"""Models: BMN with an action-classification head, its fast boundary-matching stage, targets.

Importing this package registers ``BMNwActionCls`` in MMAction2's model registry.
"""

from core.models.bm_layer import BoundaryMatchingConv, interp1d_sample_mask
from core.models.bmn_cls import BMNOutputs, BMNwActionCls, build_bmn_cls, proposal_labels
from core.models.targets import (
    BMNTargets,
    action_cls_loss,
    action_targets,
    bmn_loss,
    bmn_targets,
    boundary_targets,
    pad_ground_truth,
    proposal_iou_map,
)

__all__ = [
    "BMNOutputs",
    "BMNTargets",
    "BMNwActionCls",
    "BoundaryMatchingConv",
    "action_cls_loss",
    "action_targets",
    "bmn_loss",
    "bmn_targets",
    "boundary_targets",
    "build_bmn_cls",
    "interp1d_sample_mask",
    "pad_ground_truth",
    "proposal_iou_map",
    "proposal_labels",
]
