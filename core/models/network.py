"""BMN with an action-classification head, as a plain ``nn.Module``: no MMAction2 import.

:class:`BMNNet` is MMAction2's BMN network (mmaction2 1.2.0, ``mmaction.models.localizers.
BMN``) layer for layer, under the same parameter and buffer names (checkpoints interchange
both ways, strict), with three changes: the boundary-matching stage runs as two GEMMs
(:mod:`core.models.bm_layer`), targets and losses are batched on the device
(:mod:`core.models.targets`, :mod:`core.models.losses`), and an optional head classifies the
actions (:mod:`core.models.heads`). Training, validation, the final task and ``jobs.extract``
build this class; :class:`core.models.bmn.BMNwActionCls` is the same network registered in
MMAction2's model registry (its ``loss`` / ``predict`` modes), for MMAction2's own tools.

Shape legend:
    B: batch; C: input feature channels (feat_dim); H: BMN's hidden_dim_1d; T: temporal
    positions; D: duration index (== T); K: logits of the action head, num_action_classes + 1
    (background last); P: proposals.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from core.models.bm_layer import BoundaryMatchingConv, interp1d_sample_mask
from core.models.heads import SpanActionHead, build_action_head
from core.models.losses import bmn_loss
from core.models.targets import BMNTargets, bmn_targets

MODEL_TYPES = ("BMNwActionCls", "BMN")  # the config ``type`` names this network answers to


class BMNOutputs(NamedTuple):
    """What :meth:`BMNNet.forward_tensors` returns (all float32).

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


def _relu() -> nn.ReLU:
    return nn.ReLU(inplace=True)


def _conv1d(c_in: int, c_out: int, kernel: int = 3, groups: int = 1) -> nn.Conv1d:
    conv = GroupedConv1d if groups > 1 else nn.Conv1d
    return conv(c_in, c_out, kernel_size=kernel, padding=kernel // 2, groups=groups)


def block_diagonal(weight_OGK: torch.Tensor, groups: int) -> torch.Tensor:
    """A grouped convolution's weight (O, C / groups, K) as the dense (O, C, K) weight of the
    same convolution: group g's block on the diagonal, zeros elsewhere."""
    n_out, Cg, K = weight_OGK.shape
    w_gOCK = weight_OGK.reshape(groups, n_out // groups, Cg, K)
    eye_gh = torch.eye(groups, dtype=weight_OGK.dtype, device=weight_OGK.device)
    return torch.einsum("goik,gh->gohik", w_gOCK, eye_gh).reshape(n_out, groups * Cg, K)


class GroupedConv1d(nn.Conv1d):
    """``nn.Conv1d`` with groups (BMN's temporal trunk and boundary heads) whose CUDA forward
    is one dense convolution with the block-diagonal weight (:func:`block_diagonal`): same
    parameters, same sums (the other groups' terms are exact zeros). cuDNN has no fast
    weight-gradient kernel for grouped 1-d convolutions: its direct kernel took 172 us per
    layer at the training batch on an H100, 0.69 ms of a 5.7 ms step for four of these
    layers, where the dense convolution is a small implicit GEMM.
    ``dense_on_cuda = False`` keeps the grouped kernel (for comparisons)."""

    dense_on_cuda = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.dense_on_cuda and x.is_cuda) or self.padding_mode != "zeros":
            return super().forward(x)
        weight = block_diagonal(self.weight, self.groups)
        return F.conv1d(x, weight, self.bias, self.stride, self.padding, self.dilation)


class GemvBiasConv2d(nn.Conv2d):
    """``nn.Conv2d`` (``x_2d_p``'s) that can take its bias gradient on CUDA as one GEMV over
    the output's gradient (:class:`_BiasAdd`) instead of torch's reduction: over the
    (B, 100, 100, 128) channels-last map of the training step that reduction took 136 us per
    layer on an H100 (three layers, 0.4 ms of a 5.5 ms step, a tenth of the memory's
    bandwidth). Same parameters, same forward (the convolution without bias, then the bias
    added, as torch does for cuDNN). ``gemv_bias_on_cuda`` is off until the step is measured
    faster with it (``benchmarks/train.py``'s ``graph_gemv_bias``)."""

    gemv_bias_on_cuda = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.gemv_bias_on_cuda and x.is_cuda) or self.bias is None:
            return super().forward(x)
        return _BiasAdd.apply(self._conv_forward(x, self.weight, None), self.bias)


class _BiasAdd(torch.autograd.Function):
    """``x + bias`` over the channels of an NCHW tensor (any memory format); in channels-last
    the bias's gradient is a vector-matrix product with the gradient as (positions, C) (a
    GEMM that cuBLAS splits over the positions; the same form summed the boundary-matching
    map's other cells at 2.8 TB/s on an H100)."""

    @staticmethod
    def forward(ctx, x_BCHW: torch.Tensor, bias_C: torch.Tensor) -> torch.Tensor:
        ctx.bias_dtype = bias_C.dtype
        return x_BCHW + bias_C.to(x_BCHW.dtype).view(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, grad_BCHW: torch.Tensor):
        grad_bias = None
        if ctx.needs_input_grad[1]:
            C = grad_BCHW.shape[1]
            if grad_BCHW.is_contiguous(memory_format=torch.channels_last):
                grad_MC = grad_BCHW.permute(0, 2, 3, 1).reshape(-1, C)  # a view
                grad_bias = torch.matmul(grad_MC.new_ones(grad_MC.shape[0]), grad_MC)
            else:
                grad_bias = grad_BCHW.sum((0, 2, 3))
            grad_bias = grad_bias.to(ctx.bias_dtype)
        return grad_BCHW, grad_bias


class BMNNet(nn.Module):
    """BMN plus an action-classification head (config ``type='BMNwActionCls'``).

    The head (``cls_head``, :mod:`core.models.heads`) gives every proposal a probability per
    action class; a proposal's label is the most probable class and its ``label_score`` the
    proposal score times that probability. The per-position heads (``pointwise``, the
    lecture's, and ``temporal``) classify each position into K classes or background (index
    K), trained towards the class of the segment covering the position's centre (see
    :func:`core.models.targets.action_targets`) with cross-entropy averaged over positions,
    background weighted by ``cls_background_weight``; a proposal's probabilities are their
    mean over its span. The ``span`` head classifies proposals directly. The head's loss is
    added to BMN's times ``cls_loss_weight``.

    With ``num_action_classes=0`` the network is MMAction2's BMN, parameter for parameter
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
        super().__init__()
        self.tscale = temporal_dim
        self.boundary_ratio = boundary_ratio
        self.num_samples = num_samples
        self.num_samples_per_bin = num_samples_per_bin
        self.feat_dim = feat_dim
        self.soft_nms_alpha = soft_nms_alpha
        self.soft_nms_low_threshold = soft_nms_low_threshold
        self.soft_nms_high_threshold = soft_nms_high_threshold
        self.post_process_top_k = post_process_top_k
        self.feature_extraction_interval = feature_extraction_interval
        self.hidden_dim_1d = H = hidden_dim_1d
        self.hidden_dim_2d = hidden_dim_2d
        self.hidden_dim_3d = hidden_dim_3d
        self._build_bmn_layers(feat_dim, H, hidden_dim_2d, hidden_dim_3d, num_samples)
        self.num_action_classes = num_action_classes
        self.cls_loss_weight = cls_loss_weight
        self.cls_background_weight = cls_background_weight
        self.fast_bm = fast_bm
        self.cls_head = cls_head
        self.x_1d_cls = (
            build_action_head(
                cls_head,
                feat_dim,
                H,
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
                "fast_bm_layer.mask_KV", "fast_bm_layer.valid_V", "fast_bm_layer.source_X",
                "fast_bm_layer.invalid_X",
            ]  # fmt: skip

    def _build_bmn_layers(self, C: int, H: int, H2: int, H3: int, N: int) -> None:
        """MMAction2's BMN layers, in its order and under its names (``BMN.__init__``)."""
        T = self.tscale
        mask = interp1d_sample_mask(T, self.boundary_ratio, N, self.num_samples_per_bin)
        self.sample_mask = nn.Parameter(mask, requires_grad=False)
        self.x_1d_b = nn.Sequential(
            _conv1d(C, H, groups=4), _relu(), _conv1d(H, H, groups=4), _relu()
        )
        self.x_1d_s = nn.Sequential(
            _conv1d(H, H, groups=4), _relu(), _conv1d(H, 1, kernel=1), nn.Sigmoid()
        )
        self.x_1d_e = nn.Sequential(
            _conv1d(H, H, groups=4), _relu(), _conv1d(H, 1, kernel=1), nn.Sigmoid()
        )
        self.x_1d_p = nn.Sequential(_conv1d(H, H), _relu())
        self.x_3d_p = nn.Sequential(nn.Conv3d(H, H3, kernel_size=(N, 1, 1)), _relu())
        conv2d = GemvBiasConv2d
        self.x_2d_p = nn.Sequential(
            conv2d(H3, H2, kernel_size=1), _relu(),
            conv2d(H2, H2, kernel_size=3, padding=1), _relu(),
            conv2d(H2, H2, kernel_size=3, padding=1), _relu(),
            conv2d(H2, 2, kernel_size=1), nn.Sigmoid(),
        )  # fmt: skip
        # 1 where s + d < T, row d: [1] * (T - d) + [0] * d
        d_DT, s_DT = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
        self.register_buffer("bm_mask", (d_DT + s_DT < T).float())

    def _boundary_matching_layer(self, x_BHT: torch.Tensor) -> torch.Tensor:
        """MMAction2's sampling step (for ``fast_bm=False``): (B, H, N, D, T)."""
        B, H, _ = x_BHT.shape
        out = torch.matmul(x_BHT, self.sample_mask)
        return out.reshape(B, H, self.num_samples, self.tscale, self.tscale)

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
        """MMAction2's (confidence_map, start, end)."""
        out = self.forward_tensors(x)
        return out.conf_map_B2DT, out.start_BT, out.end_BT

    def forward(self, feats_BCT: torch.Tensor) -> BMNOutputs:
        return self.forward_tensors(feats_BCT)

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

    def label_proposals(
        self, head_BXT: torch.Tensor, start_BP: torch.Tensor, end_BP: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each proposal's label (int64) and that label's probability (float64); proposals
        cover positions ``start <= t < end``."""
        probs_BKP = self.x_1d_cls.proposal_probs(head_BXT, start_BP, end_BP)
        best_BP = probs_BKP.max(dim=1)
        return best_BP.indices, best_BP.values


def _before_sigmoid(head: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Runs one of MMAction2's heads up to its final Sigmoid (the logits)."""
    layers = list(head)
    for layer in layers[:-1]:
        x = layer(x)
    return x


def _refresh_fast_bm(module: BMNNet, incompatible_keys: Any) -> None:
    """After load_state_dict: rebuild the GEMM form of the (possibly loaded) sample mask."""
    if module.fast_bm_layer is not None:
        module.fast_bm_layer.set_sample_mask(module.sample_mask)


def check_model_cfg(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :class:`BMNNet` in an MMAction2-style model dict (``type``
    'BMNwActionCls' or 'BMN', or none).

    Raises:
        ValueError: an unknown key (named), a missing required one, or another type.
    """
    cfg = dict(cfg)
    kind = cfg.pop("type", MODEL_TYPES[0])
    if kind not in MODEL_TYPES:
        raise ValueError(f"model type must be 'BMNwActionCls' or 'BMN', got {kind!r}")
    params = inspect.signature(BMNNet.__init__).parameters
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
    return cfg


def build_bmn_cls(cfg: Mapping[str, Any]) -> BMNNet:
    """Builds the network from an MMAction2-style dict (see :func:`check_model_cfg`)."""
    return BMNNet(**check_model_cfg(cfg))
