"""The trained localizer as a unit: checkpoint format, loading, and batched proposals.

Checkpoint format written by jobs.train (``best.pth``) and read by jobs.extract, loadable with
``torch.load(weights_only=True)``::

    {"state_dict": {...}, "meta": {"model": <model dict>, "class_names": [...], "epoch": int,
                                   "metrics": {...}}}

MMAction2 BMN checkpoints (``{"state_dict": ..., "meta": ...}`` from MMEngine) load too when
the user opts in to pickle (their ``meta`` holds Python objects).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from core.io.checkpoint import load_checkpoint, unwrap_state_dict
from core.models.network import BMNNet, build_bmn_cls
from core.models.postprocess import batched_proposals

log = logging.getLogger(__name__)

RANDOM = "random"


def checkpoint_payload(
    model: BMNNet, model_cfg: Mapping[str, Any], class_names: list[str], **meta: Any
) -> dict:
    """What :func:`core.io.checkpoint.save_checkpoint` writes for a localizer."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {
        "state_dict": state,
        "meta": {"model": dict(model_cfg), "class_names": list(class_names), **meta},
    }


def checkpoint_facts(uri: str | None, allow_pickle: bool = False) -> dict:
    """sha256, class names and model dict of a localizer checkpoint (``random`` for none)."""
    if not uri:
        return {"uri": None, "sha256": RANDOM, "class_names": [], "model": None}
    obj, sha = load_checkpoint(uri, allow_pickle=allow_pickle)
    meta = obj.get("meta", {}) if isinstance(obj, Mapping) else {}
    meta = meta if isinstance(meta, Mapping) else {}
    return {
        "uri": uri,
        "sha256": sha,
        "class_names": list(meta.get("class_names", [])),
        "model": dict(meta["model"]) if isinstance(meta.get("model"), Mapping) else None,
    }


def resolve_class_names(num_classes: int, names: list[str] | None) -> list[str]:
    """The head's class names: those given (checkpoint's, else config's), else ``class_<i>``.

    Raises:
        ValueError: names were given but their number differs from the head's classes.
    """
    names = list(names or [])
    if not names:
        return [f"class_{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for an action head of {num_classes} classes")
    return names


class Localizer:
    """A BMN-with-classification model ready for batched inference.

    ``dtype``: ``float32``; ``tf32`` (float32 with TF32 matrix products on CUDA, process-wide);
    ``bfloat16`` (autocast on CUDA). On the CPU all three run float32.
    """

    def __init__(self, model: BMNNet, class_names: list[str], device: str, dtype: str) -> None:
        self.model = model.to(device).eval()
        self.class_names = class_names
        self.device = torch.device(device)
        self.autocast = dtype == "bfloat16" and self.device.type == "cuda"
        if dtype == "tf32" and self.device.type == "cuda":  # float32 storage, TF32 tensor cores
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.top_k = int(model.post_process_top_k)

    @torch.inference_mode()
    def propose(
        self, feats_BCT: np.ndarray, durations_B: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Proposals of a batch of videos, best first, padded to ``top_k``.

        Returns:
            props_BP4 (t_start, t_end in seconds, score, label_score; float64),
            label_BP (int32, -1 without an action head), valid_BP (bool).
        """
        x = torch.from_numpy(np.ascontiguousarray(feats_BCT, dtype=np.float32)).to(self.device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            out = self.model.forward_tensors(x)
        m = self.model
        props = batched_proposals(
            out.conf_map_B2DT.float(),
            out.start_BT.float(),
            out.end_BT.float(),
            torch.as_tensor(durations_B, dtype=torch.float64),
            soft_nms_alpha=m.soft_nms_alpha,
            soft_nms_low_threshold=m.soft_nms_low_threshold,
            soft_nms_high_threshold=m.soft_nms_high_threshold,
            top_k=self.top_k,
        )
        if out.action_BXT is not None:  # the head labels the kept proposals
            labels_BP, probs_BP = m.label_proposals(
                out.action_BXT, props.positions_BP2[..., 0], props.positions_BP2[..., 1]
            )
            props.labels_BP = labels_BP
            props.label_scores_BP = props.scores_BP * probs_BP.to(props.scores_BP.dtype)
        B, P = props.scores_BP.shape
        props_BP4 = np.zeros((B, self.top_k, 4), dtype=np.float64)
        label_BP = np.full((B, self.top_k), -1, dtype=np.int32)
        valid_BP = np.zeros((B, self.top_k), dtype=bool)
        props_BP4[:, :P, :2] = props.segments_BP2.cpu().numpy()
        props_BP4[:, :P, 2] = props.scores_BP.cpu().numpy()
        if props.labels_BP is not None:
            props_BP4[:, :P, 3] = props.label_scores_BP.cpu().numpy()
            label_BP[:, :P] = props.labels_BP.cpu().numpy()
        else:
            props_BP4[:, :P, 3] = props_BP4[:, :P, 2]
        valid_BP[:, :P] = props.valid_BP.cpu().numpy()
        return props_BP4, label_BP, valid_BP


def load_localizer(
    model_cfg: Mapping[str, Any],
    checkpoint_uri: str | None = None,
    class_names: list[str] | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    allow_pickle: bool = False,
    seed: int = 0,
) -> Localizer:
    """Builds the model (the checkpoint's own model dict wins over ``model_cfg``) and loads it.

    Without a checkpoint the weights are random (seeded): fine for plumbing, meaningless
    proposals.
    """
    names = list(class_names or [])
    if checkpoint_uri:
        obj, sha = load_checkpoint(checkpoint_uri, allow_pickle=allow_pickle)
        meta = obj.get("meta", {}) if isinstance(obj, Mapping) else {}
        meta = meta if isinstance(meta, Mapping) else {}
        if isinstance(meta.get("model"), Mapping):
            if dict(meta["model"]) != dict(model_cfg):
                log.info("using the model settings stored in %s", checkpoint_uri)
            model_cfg = meta["model"]
        names = list(meta.get("class_names", names))
        model = build_bmn_cls(model_cfg)
        model.load_state_dict(unwrap_state_dict(obj), strict=True)
        log.info("loaded localizer %s (sha256 %s)", checkpoint_uri, sha[:12])
    else:
        torch.manual_seed(seed)
        model = build_bmn_cls(model_cfg)
        log.warning("localizer has random weights: proposals are meaningless until trained")
    names = resolve_class_names(model.num_action_classes, names)
    return Localizer(model, names, device, dtype)
