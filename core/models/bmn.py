"""``BMNwActionCls`` in MMAction2's model registry: :class:`core.models.network.BMNNet` with
MMEngine's model interface, for MMAction2's own tools (``configs/mmaction2/``, imported through
:mod:`core.mmaction`).

Only what MMAction2's runner calls lives here: ``forward(inputs, data_samples, mode)`` with the
``tensor``, ``loss`` and ``predict`` modes, and ``init_weights``. The network, its parameter
names and its numerics are :class:`~core.models.network.BMNNet`'s, so a checkpoint of either
class loads into the other (and into MMAction2's ``BMN``) with strict=True. This module imports
MMAction2 (seconds); the training job and ``jobs.extract`` do not import it.

Shape legend: B batch; C feature channels; T positions; P proposals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mmaction.models.localizers import BMN
from mmaction.registry import MODELS
from mmengine.model import BaseModel

from core.models.network import BMNNet
from core.models.targets import pad_ground_truth


@MODELS.register_module()
class BMNwActionCls(BMNNet, BaseModel):
    """:class:`~core.models.network.BMNNet` as an MMEngine model (MMAction2
    ``type='BMNwActionCls'``); takes BMNNet's arguments."""

    def init_weights(self) -> None:
        """As MMAction2's BMN: the layers keep PyTorch's initialisation."""

    def forward(
        self,
        inputs: torch.Tensor | Sequence[torch.Tensor],
        data_samples: Sequence[Any] | None = None,
        mode: str = "tensor",
        **kwargs: Any,
    ) -> Any:
        """MMEngine's entry: ``tensor`` gives :class:`~core.models.network.BMNOutputs`,
        ``loss`` a dict of losses summing to the total, ``predict`` MMAction2's per-video
        proposal dicts."""
        feats_BCT = inputs if isinstance(inputs, torch.Tensor) else torch.stack(list(inputs))
        if mode == "tensor":
            return self.forward_tensors(feats_BCT)
        if mode == "loss":
            return self.loss(feats_BCT, data_samples)
        if mode == "predict":
            return self.predict(feats_BCT, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}". Only supports loss, predict and tensor mode')

    def loss(self, batch_inputs: torch.Tensor, batch_data_samples: Sequence[Any], **kwargs: Any):
        """MMEngine ``loss`` mode: ground truth from ``gt_instances['gt_bbox']`` (and
        ``['gt_labels']`` with the head). Without the head the dict is upstream's
        ``{'loss': ...}``; with it ``loss_bmn`` and ``loss_action_cls`` (weighted)."""
        segments = [ds.gt_instances["gt_bbox"] for ds in batch_data_samples]
        labels = None
        if self.x_1d_cls is not None:
            labels = [_segment_labels(ds) for ds in batch_data_samples]
        gt_BG2, valid_BG, labels_BG = pad_ground_truth(segments, labels, batch_inputs.device)
        losses = self.compute_loss(
            self.forward_tensors(batch_inputs), self.make_targets(gt_BG2, valid_BG, labels_BG)
        )
        if self.x_1d_cls is None:
            return {"loss": losses["loss"]}
        return {
            "loss_bmn": losses["bmn"],
            "loss_action_cls": self.cls_loss_weight * losses["action_cls"],
        }

    def predict(self, batch_inputs: torch.Tensor, batch_data_samples: Sequence[Any], **kwargs):
        """Upstream's per-video proposals (MMAction2's ``BMN.predict`` and its
        post-processing) for every video of the batch (upstream reads only the first); with
        the head each proposal also gets ``label_id``, ``label_prob`` and ``label_score`` =
        score × label_prob. Batched inference: :class:`core.models.localizer.Localizer`."""
        results = []
        for i, sample in enumerate(batch_data_samples):
            feats_1CT = batch_inputs[i : i + 1]
            (result,) = BMN.predict(self, feats_1CT, [sample])
            if self.x_1d_cls is not None:
                self._label_proposals(result["proposal_list"], feats_1CT, sample.metainfo)
            results.append(result)
        return results

    def _label_proposals(
        self, proposals: list[dict], feats_1CT: torch.Tensor, video_info: Mapping[str, Any]
    ) -> None:
        if not proposals:
            return
        # invert upstream's post_processing: segment = position / T * video_duration
        interval = self.feature_extraction_interval
        frames = video_info["duration_frame"]
        duration = float(frames // interval * interval) / frames * video_info["duration_second"]
        bounds_P2 = torch.tensor([p["segment"] for p in proposals], dtype=torch.float64)
        pos_P2 = (bounds_P2 / duration * self.tscale).round().long().clamp(0, self.tscale)
        head_1XT = self.forward_tensors(feats_1CT).action_BXT
        label_1P, prob_1P = self.label_proposals(head_1XT, pos_P2[None, :, 0], pos_P2[None, :, 1])
        label_P, prob_P = label_1P[0], prob_1P[0]
        for p, label, prob in zip(proposals, label_P.tolist(), prob_P.tolist(), strict=True):
            p["label_id"] = label
            p["label_prob"] = prob
            p["label_score"] = p["score"] * prob


def _segment_labels(data_sample: Any) -> torch.Tensor:
    """``gt_instances['gt_labels']``, or an error that says how a pipeline provides them."""
    gt = data_sample.gt_instances
    if "gt_labels" not in gt:
        raise ValueError(
            "BMNwActionCls's action head trains on per-segment labels, but the data sample "
            f"has none (gt_instances holds {sorted(gt.keys())}). MMAction2's ActivityNet "
            "pipeline packs no labels: add dict(type='GenerateSegmentLabels', "
            "classes=<label_map.txt or a list>) after GenerateLocalizationLabels and "
            "'gt_labels' to PackLocalizationInputs' keys (custom_imports: core.mmaction; see "
            "configs/mmaction2/), or set num_action_classes=0 for BMN alone."
        )
    return gt["gt_labels"]
