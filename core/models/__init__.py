"""The localizer model, in the order data flows through it.

* :mod:`core.models.network` the network: MMAction2's BMN plus an action-classification head
  (``BMNNet``, a plain ``nn.Module`` under MMAction2's parameter names; no MMAction2 import).
* :mod:`core.models.bmn` the same network registered in MMAction2's model registry
  (``BMNwActionCls``), for MMAction2's own tools; importing it imports MMAction2, so this
  package loads it only when ``BMNwActionCls`` is asked for.
* :mod:`core.models.bm_layer` its boundary-matching stage as two GEMMs.
* :mod:`core.models.heads` the action-classification heads.
* :mod:`core.models.targets` training targets from ground-truth segments.
* :mod:`core.models.losses` BMN's losses and the head's.
* :mod:`core.models.postprocess` batched proposals, Soft-NMS and labels.
* :mod:`core.models.localizer` the checkpoint format and batched inference.
"""

from core.models.bm_layer import BoundaryMatchingConv, interp1d_sample_mask
from core.models.losses import action_cls_loss, bmn_loss
from core.models.network import BMNNet, BMNOutputs, build_bmn_cls
from core.models.postprocess import proposal_labels
from core.models.targets import (
    BMNTargets,
    action_targets,
    bmn_targets,
    boundary_targets,
    pad_ground_truth,
    proposal_iou_map,
)

__all__ = [
    "BMNNet",
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


def __getattr__(name: str):
    if name == "BMNwActionCls":  # MMAction2's registered class: imports MMAction2
        from core.models.bmn import BMNwActionCls

        return BMNwActionCls
    raise AttributeError(f"module 'core.models' has no attribute {name!r}")
