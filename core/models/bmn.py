"""BMN with a per-position action-classification head, registered for MMAction2 configs.

:class:`BMNwActionCls` is MMAction2's BMN (same parameter and buffer names, so checkpoints
interchange both ways) with three changes: the boundary-matching stage runs as two GEMMs
(:mod:`core.models.bm_layer`), targets and losses are batched on the device
(:mod:`core.models.targets`, :mod:`core.models.losses`), and an optional head classifies the
actions (:mod:`core.models.heads`).

Shape legend:
    B: batch; C: input feature channels (feat_dim); H: BMN's hidden_dim_1d; T: temporal
    positions; D: duration index (== T); K: logits of the action head, num_action_classes + 1
    (background last); P: proposals.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from mmaction.models.localizers import BMN
from mmaction.registry import MODELS
from torch import nn

from core.models.bm_layer import BoundaryMatchingConv, interp1d_sample_mask
from core.models.heads import SpanActionHead, build_action_head
from core.models.losses import bmn_loss
from core.models.targets import BMNTargets, bmn_targets, pad_ground_truth


class BMNOutputs(NamedTuple):
    """What :meth:`BMNwActionCls.forward_tensors` returns (all float32).

    Attributes:
        conf_map_B2DT: channel 0 the regression ('reg') map, 1 the classification ('cls') map,
            cell (d, s) the proposal [s/T, (s+d+1)/T], as MMAction2 orders them.
        start_BT, end_BT: boundary probabilities per position.
        action_BXT: the action head's per-position output, or None without a head: logits
            over the classes and background (X = K + 1) for the per-position heads, the
            standardised features (X = C) that the ``span`` head pools over proposals.
    """

    conf_map_B2DT: torch.Tensor
    start_BT: torch.Tensor
    end_BT: torch.Tensor
    action_BXT: torch.Tensor | None = None


@MODELS.register_module()
class BMNwActionCls(BMN):
    """BMN plus an action-classification head (MMAction2 ``type='BMNwActionCls'``).

    The head (``cls_head``, :mod:`core.models.heads`) gives every proposal a probability per
    action class; a proposal's label is the most probable class and its ``label_score`` the
    proposal score times that probability. The per-position heads (``pointwise``, the
    lecture's, and ``temporal``) classify each position into K classes or background (index
    K), trained towards the class of the segment covering the position's centre (see
    :func:`core.models.targets.action_targets`) with cross-entropy averaged over positions,
    background weighted by ``cls_background_weight``; a proposal's probabilities are their
    mean over its span. The ``span`` head classifies proposals directly. The head's loss is
    added to BMN's times ``cls_loss_weight``.

    With ``num_action_classes=0`` the model is MMAction2's BMN, parameter for parameter
    (36.979 M at temporal_dim 100, feat_dim 400), and loads its state_dicts with strict=True.

    Args:
        temporal_dim ... hidden_dim_3d: as MMAction2's BMN. ``loss_cls`` must be BMNLoss (its
            batched equal in :mod:`core.models.losses` is what runs).
        num_action_classes: K action classes; 0 turns the head off.
        cls_head: ``pointwise`` (the lecture's 1x1 convolution on the input features),
            ``temporal`` (a branch of BMN's temporal trunk with context) or ``span`` (a
            proposal-level classifier), see :mod:`core.models.heads`.
        cls_dropout: dropout inside the ``temporal`` and ``span`` heads.
        cls_iou_threshold: the ``span`` head trains on proposal cells with at least this tIoU
            with a ground-truth segment.
        cls_loss_weight: weight of the head's loss in the total.
        cls_background_weight: cross-entropy weight of the background class.
        fast_bm: run the boundary-matching stage as GEMMs (:mod:`core.models.bm_layer`)
            instead of MMAction2's matmul + Conv3d; same parameters, same results in fp32.
    """

    def __init__(
        self,
        temporal_dim: int,
        boundary_ratio: float,
        num_samples: int,
        num_samples_per_bin: int,
        feat_dim: int,
        soft_nms_alpha: float,
        soft_nms_low_threshold: float,
        soft_nms_high_threshold: float,
        post_process_top_k: int,
        feature_extraction_interval: int = 16,
        loss_cls: Mapping[str, Any] | None = None,
        hidden_dim_1d: int = 256,
        hidden_dim_2d: int = 128,
        hidden_dim_3d: int = 512,
        num_action_classes: int = 0,
        cls_head: str = "pointwise",
        cls_dropout: float = 0.0,
        cls_iou_threshold: float = 0.5,
        cls_loss_weight: float = 1.0,
        cls_background_weight: float = 1.0,
        fast_bm: bool = True,
    ) -> None:
        loss_cls = dict(loss_cls or {"type": "BMNLoss"})
        if loss_cls.get("type") != "BMNLoss":
            raise ValueError(f"loss_cls must be BMNLoss (its batched form runs), got {loss_cls}")
        if num_action_classes < 0:
            raise ValueError(f"num_action_classes must be >= 0, got {num_action_classes}")
        super().__init__(
            temporal_dim, boundary_ratio, num_samples, num_samples_per_bin, feat_dim,
            soft_nms_alpha, soft_nms_low_threshold, soft_nms_high_threshold, post_process_top_k,
            feature_extraction_interval, loss_cls, hidden_dim_1d, hidden_dim_2d, hidden_dim_3d,
        )  # fmt: skip
        self.num_action_classes = num_action_classes
        self.cls_loss_weight = cls_loss_weight
        self.cls_background_weight = cls_background_weight
        self.fast_bm = fast_bm
        self.cls_head = cls_head
        self.x_1d_cls = (
            build_action_head(
                cls_head,
                feat_dim,
                hidden_dim_1d,
                num_action_classes,
                cls_dropout,
                cls_background_weight,
                cls_iou_threshold,
            )  # fmt: skip
            if num_action_classes
            else None
        )
        self.fast_bm_layer = None
        # constants, equal on every rank: DDP need not broadcast them
        self._ddp_params_and_buffers_to_ignore = ["sample_mask"]
        if fast_bm:
            self.fast_bm_layer = BoundaryMatchingConv(self.sample_mask, temporal_dim, num_samples)
            self.register_load_state_dict_post_hook(_refresh_fast_bm)
            self._ddp_params_and_buffers_to_ignore += [
                "fast_bm_layer.mask_KV", "fast_bm_layer.valid_V"
            ]  # fmt: skip

    def _get_interp1d_mask(self) -> None:
        """Upstream's sample mask, bit for bit, built vectorised (upstream loops take ~5 s)."""
        mask = interp1d_sample_mask(
            self.tscale, self.boundary_ratio, self.num_samples, self.num_samples_per_bin
        )
        self.sample_mask = nn.Parameter(mask, requires_grad=False)

    def forward_tensors(self, feats_BCT: torch.Tensor) -> BMNOutputs:
        """The network on a batch of features, outputs in float32 (probabilities via a float32
        sigmoid, so bf16 autocast does not quantize them before the log losses)."""
        base_BHT = self.x_1d_b(feats_BCT)
        start_BT = torch.sigmoid(_before_sigmoid(self.x_1d_s, base_BHT).float()).squeeze(1)
        end_BT = torch.sigmoid(_before_sigmoid(self.x_1d_e, base_BHT).float()).squeeze(1)
        pem_BHT = self.x_1d_p(base_BHT)
        if self.fast_bm_layer is not None:
            conv3d = self.x_3d_p[0]
            bm_BODT = self.fast_bm_layer(pem_BHT, conv3d.weight, conv3d.bias)
        else:
            bm_BODT = self.x_3d_p(self._boundary_matching_layer(pem_BHT)).squeeze(2)
        conf_B2DT = torch.sigmoid(_before_sigmoid(self.x_2d_p, bm_BODT).float())
        logits_BKT = None  # the head's output (logits for the per-position heads)
        if self.x_1d_cls is not None:
            logits_BKT = self.x_1d_cls(feats_BCT, base_BHT)
        return BMNOutputs(conf_B2DT, start_BT, end_BT, logits_BKT)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Upstream's (confidence_map, start, end), for the inherited ``predict``."""
        out = self.forward_tensors(x)
        return out.conf_map_B2DT, out.start_BT, out.end_BT

    def forward(
        self,
        inputs: torch.Tensor | Sequence[torch.Tensor],
        data_samples: Sequence[Any] | None = None,
        mode: str = "tensor",
        **kwargs: Any,
    ) -> Any:
        """MMEngine's entry: ``tensor`` gives :class:`BMNOutputs`, ``loss`` a dict of losses
        summing to the total, ``predict`` MMAction2's per-video proposal dicts."""
        feats_BCT = inputs if isinstance(inputs, torch.Tensor) else torch.stack(list(inputs))
        if mode == "tensor":
            return self.forward_tensors(feats_BCT)
        if mode == "loss":
            return self.loss(feats_BCT, data_samples)
        if mode == "predict":
            return self.predict(feats_BCT, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}". Only supports loss, predict and tensor mode')

    def make_targets(
        self,
        gt_BG2: torch.Tensor,
        gt_valid_BG: torch.Tensor | None = None,
        gt_labels_BG: torch.Tensor | None = None,
    ) -> BMNTargets:
        """Training targets (see :func:`core.models.targets.bmn_targets`)."""
        span = isinstance(self.x_1d_cls, SpanActionHead)
        cell_iou = self.x_1d_cls.iou_threshold if span else None
        return bmn_targets(
            gt_BG2, gt_valid_BG, self.tscale, gt_labels_BG, self.num_action_classes, cell_iou
        )

    def compute_loss(
        self,
        outputs: BMNOutputs,
        targets: BMNTargets,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """BMN's loss plus the head's.

        Returns:
            ``loss`` (the total to backpropagate), ``bmn`` (MMAction2's BMNLoss), its parts
            ``tem``, ``pem_reg``, ``pem_cls`` and, with the head, ``action_cls`` (unweighted).
            Only ``loss`` has "loss" in its name, so MMEngine's ``parse_losses`` would not
            count a part twice.
        """
        losses = bmn_loss(
            outputs.conf_map_B2DT, outputs.start_BT, outputs.end_BT, targets, self.bm_mask,
            generator=generator,
        )  # fmt: skip
        total = losses["bmn"]
        if self.x_1d_cls is not None:
            if outputs.action_BXT is None:
                raise ValueError("the action head's output is missing")
            ce = self.x_1d_cls.loss(outputs.action_BXT, targets)
            losses["action_cls"] = ce
            total = total + self.cls_loss_weight * ce
        losses["loss"] = total
        return losses

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
        """Upstream's per-video proposals for every video of the batch (upstream reads only
        the first); with the head each proposal also gets ``label_id``, ``label_prob`` and
        ``label_score`` = score × label_prob. Batched inference: ``forward_tensors`` and
        :mod:`core.models.postprocess`."""
        results = []
        for i, sample in enumerate(batch_data_samples):
            feats_1CT = batch_inputs[i : i + 1]
            (result,) = super().predict(feats_1CT, [sample])
            if self.x_1d_cls is not None:
                self._label_proposals(result["proposal_list"], feats_1CT, sample.metainfo)
            results.append(result)
        return results

    def label_proposals(
        self, head_BXT: torch.Tensor, start_BP: torch.Tensor, end_BP: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each proposal's label (int64) and that label's probability (float64); proposals
        cover positions ``start <= t < end``."""
        probs_BKP = self.x_1d_cls.proposal_probs(head_BXT, start_BP, end_BP)
        best_BP = probs_BKP.max(dim=1)
        return best_BP.indices, best_BP.values

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


def _before_sigmoid(head: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Runs one of MMAction2's heads up to its final Sigmoid (the logits)."""
    layers = list(head)
    for layer in layers[:-1]:
        x = layer(x)
    return x


def _refresh_fast_bm(module: BMNwActionCls, incompatible_keys: Any) -> None:
    """After load_state_dict: rebuild the GEMM form of the (possibly loaded) sample mask."""
    if module.fast_bm_layer is not None:
        module.fast_bm_layer.set_sample_mask(module.sample_mask)


def build_bmn_cls(cfg: Mapping[str, Any]) -> BMNwActionCls:
    """Builds the model from an MMAction2-style dict (``type`` 'BMNwActionCls' or 'BMN').

    Raises:
        ValueError: an unknown key (named), a missing required one, or another type.
    """
    cfg = dict(cfg)
    kind = cfg.pop("type", "BMNwActionCls")
    if kind not in ("BMNwActionCls", "BMN"):
        raise ValueError(f"model type must be 'BMNwActionCls' or 'BMN', got {kind!r}")
    params = inspect.signature(BMNwActionCls.__init__).parameters
    accepted = sorted(set(params) - {"self"})
    unknown = sorted(set(cfg) - set(accepted))
    if unknown:
        raise ValueError(f"unknown model key(s) {unknown}; BMNwActionCls takes {accepted}")
    required = [
        n for n, p in params.items() if n != "self" and p.default is inspect.Parameter.empty
    ]
    missing = [n for n in required if n not in cfg]
    if missing:
        raise ValueError(f"missing model key(s) {missing}")
    return BMNwActionCls(**cfg)


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
