"""Per-snippet features from an MMAction2 recognizer (TSN, SlowOnly, ...).

The recognizer is built from its MMAction2 config dict with ``mmaction.registry.MODELS`` and
run piece by piece: the recognizer's ``data_preprocessor`` mean/std normalise the uint8 clips
on the device, ``backbone`` makes the feature map, and then either

* ``output="scores"``: ``cls_head`` and a softmax, i.e. the class probabilities that MMAction2's
  ``average_clips='prob'`` gives for one clip (for TSN the head averages a snippet's frames, its
  segment consensus). Kinetics-400 TSN scores are the 400-d "class score" features of the
  ActivityNet ``400 x 100`` layout (``csv_mean_100``); or
* ``output="pooled"``: the backbone map averaged over space (and time / frames), e.g. 2048-d
  for ResNet-50, as ``clip_feature_extraction.py``'s ``FeatureHead`` with ``avg`` pooling.

Only ``mmcv.cnn`` is used underneath (no ``mmcv.ops``), so mmcv-lite serves as well as mmcv.
Frames arrive as RGB (:mod:`core.video.decode`), so the preprocessor's ``to_rgb`` is ignored.

Shape legend: N snippets, T frames per snippet, H x W crop, C channels (3 in, C' out), K classes.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import core  # noqa: F401  (upstream shims before mmaction)

log = logging.getLogger(__name__)

OUTPUTS = ("scores", "pooled")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# ----------------------------------------------------------------------------- presets
# Architectures as in mmaction2 1.2.0's configs (``_base_/models/tsn_r50.py``,
# ``_base_/models/slowonly_r50.py``), with ``pretrained=None`` because the checkpoint carries
# every weight. Checkpoint URLs are the ``Weights:`` entries of the configs' metafile.yml.

_KINETICS_PREPROCESSOR = dict(
    type="ActionDataPreprocessor",
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
)

TSN_R50_KINETICS400: dict[str, Any] = dict(
    type="Recognizer2D",
    backbone=dict(type="ResNet", pretrained=None, depth=50, norm_eval=False),
    cls_head=dict(
        type="TSNHead",
        num_classes=400,
        in_channels=2048,
        spatial_type="avg",
        consensus=dict(type="AvgConsensus", dim=1),
        dropout_ratio=0.4,
        init_std=0.01,
        average_clips="prob",
    ),
    data_preprocessor=dict(**_KINETICS_PREPROCESSOR, format_shape="NCHW"),
    train_cfg=None,
    test_cfg=None,
)
TSN_R50_KINETICS400_CHECKPOINT = (
    "https://download.openmmlab.com/mmaction/v1.0/recognition/tsn/"
    "tsn_imagenet-pretrained-r50_8xb32-1x1x8-100e_kinetics400-rgb/"
    "tsn_imagenet-pretrained-r50_8xb32-1x1x8-100e_kinetics400-rgb_20220906-2692d16c.pth"
)

SLOWONLY_R50_8X8_KINETICS400: dict[str, Any] = dict(
    type="Recognizer3D",
    backbone=dict(
        type="ResNet3dSlowOnly",
        depth=50,
        pretrained=None,
        lateral=False,
        conv1_kernel=(1, 7, 7),
        conv1_stride_t=1,
        pool1_stride_t=1,
        inflate=(0, 0, 1, 1),
        norm_eval=False,
    ),
    cls_head=dict(
        type="I3DHead",
        in_channels=2048,
        num_classes=400,
        spatial_type="avg",
        dropout_ratio=0.5,
        average_clips="prob",
    ),
    data_preprocessor=dict(**_KINETICS_PREPROCESSOR, format_shape="NCTHW"),
)
SLOWONLY_R50_8X8_KINETICS400_CHECKPOINT = (
    "https://download.openmmlab.com/mmaction/v1.0/recognition/slowonly/"
    "slowonly_imagenet-pretrained-r50_8xb16-8x8x1-steplr-150e_kinetics400-rgb/"
    "slowonly_imagenet-pretrained-r50_8xb16-8x8x1-steplr-150e_kinetics400-rgb_20220901-df42dc84.pth"
)

TSN_R18_DEMO: dict[str, Any] = copy.deepcopy(TSN_R50_KINETICS400)
"""TSN with a ResNet-18 (512-d pooled, 400 scores) for demos and tests on CPU at 56-112 px."""
TSN_R18_DEMO["backbone"]["depth"] = 18
TSN_R18_DEMO["cls_head"]["in_channels"] = 512


# ----------------------------------------------------------------------------- extractor


@dataclass(frozen=True)
class ExtractorConfig:
    """How to build a :class:`FeatureExtractor`."""

    model: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(TSN_R50_KINETICS400))
    """MMAction2 recognizer config dict (``Recognizer2D``/``Recognizer3D`` with a backbone,
    a ``cls_head`` and an ``ActionDataPreprocessor``), e.g. :data:`TSN_R50_KINETICS400`."""
    checkpoint: str | None = None
    """URI of an MMEngine checkpoint (``{'state_dict': ...}``) or a bare state dict; ``None``
    gives random weights from ``seed`` (tests, demos)."""
    output: str = "scores"
    """``"scores"`` (softmax class scores, K-d) or ``"pooled"`` (pooled backbone, C'-d)."""
    device: str = "cpu"
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ..."""
    dtype: str = "float32"
    """``"float32"``, or ``"bfloat16"``/``"float16"`` autocast (CUDA; outputs stay float32)."""
    channels_last: bool = True
    """Channels-last memory format for the backbone on CUDA (ignored on CPU)."""
    max_batch: int = 256
    """Most snippets per forward; larger inputs are split (results are identical)."""
    seed: int = 0
    """Seed of the random weights when ``checkpoint`` is ``None``."""
    allow_pickle: bool = False
    """Allow a checkpoint that needs full unpickling (runs code from the file): trusted only."""

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        if self.max_batch < 1:
            raise ValueError("max_batch must be >= 1")

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> ExtractorConfig:
        """Builds from a config dict; an unknown key is an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(cfg) - known
        if unknown:
            raise KeyError(f"unknown ExtractorConfig keys {sorted(unknown)}; known {sorted(known)}")
        return cls(**cfg)


class FeatureExtractor:
    """Maps batches of uint8 snippets (from any number of videos) to per-snippet features."""

    def __init__(self, cfg: ExtractorConfig) -> None:
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.model = build_recognizer(cfg.model, cfg.checkpoint, cfg.seed, cfg.allow_pickle)
        self.is_3d = type(self.model).__name__ == "Recognizer3D"
        if getattr(self.model, "with_neck", False):
            raise ValueError("recognizers with a neck are not supported: use one without `neck`")
        preprocessor = self.model.data_preprocessor
        if not getattr(preprocessor, "_enable_normalize", False):
            raise ValueError("the recognizer's data_preprocessor must set mean and std")
        self.mean_C = preprocessor.mean.reshape(-1).to(self.device)
        self.std_C = preprocessor.std.reshape(-1).to(self.device)
        self.model.to(self.device).eval()
        self.memory_format = torch.contiguous_format
        if cfg.channels_last and self.device.type == "cuda":
            self.memory_format = torch.channels_last_3d if self.is_3d else torch.channels_last
            self.model.backbone.to(memory_format=self.memory_format)

    @property
    def feature_dim(self) -> int:
        """Length of one snippet's feature vector: K for scores, C' for pooled."""
        head = self.model.cls_head
        return head.num_classes if self.cfg.output == "scores" else head.in_channels

    @torch.inference_mode()
    def extract(self, clips_NTHWC: np.ndarray) -> np.ndarray:
        """Features of each snippet, independent of how snippets are batched.

        Args:
            clips_NTHWC: uint8 RGB snippets, shape ``(N, T, H, W, 3)``, as
                :class:`core.video.decode.SnippetBatch` holds them; N may be 0.

        Returns:
            float32 array ``(N, feature_dim)``.
        """
        clips_NTHWC = np.asarray(clips_NTHWC)
        if clips_NTHWC.ndim != 5 or clips_NTHWC.shape[-1] != 3:
            raise ValueError(f"expected (N, T, H, W, 3) clips, got shape {clips_NTHWC.shape}")
        if len(clips_NTHWC) == 0:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        step = self.cfg.max_batch
        parts = [self._forward(clips_NTHWC[i : i + step]) for i in range(0, len(clips_NTHWC), step)]
        return np.concatenate(parts)

    def _forward(self, clips_NTHWC: np.ndarray) -> np.ndarray:
        if not clips_NTHWC.flags.writeable:  # Ray hands out read-only views; torch wants to own
            clips_NTHWC = clips_NTHWC.copy()
        x_NTHWC = torch.from_numpy(np.ascontiguousarray(clips_NTHWC)).to(self.device)
        x_NTHWC = (x_NTHWC.float() - self.mean_C) / self.std_C
        n, t, h, w, c = x_NTHWC.shape
        if self.is_3d:  # a permuted view: NCTHW shape with channels-last-3d strides
            x = x_NTHWC.permute(0, 4, 1, 2, 3)
        else:  # every frame is an image, TSN style
            x = x_NTHWC.reshape(n * t, h, w, c).permute(0, 3, 1, 2)
        x = x.contiguous(memory_format=self.memory_format)
        with self._autocast():
            fmap = self.model.backbone(x)  # (N, C', t, h, w) or (N*T, C', h, w)
            if self.cfg.output == "scores":
                logits_NK = self.model.cls_head(fmap, num_segs=t)
        if self.cfg.output == "scores":
            feats = torch.softmax(logits_NK.float(), dim=1)
        elif self.is_3d:
            feats = fmap.float().mean(dim=(2, 3, 4))
        else:
            feats = fmap.float().mean(dim=(2, 3)).reshape(n, t, -1).mean(dim=1)
        return feats.cpu().numpy()

    def _autocast(self):
        dtype = DTYPES[self.cfg.dtype]
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)


def build_recognizer(
    model_cfg: dict[str, Any],
    checkpoint: str | None = None,
    seed: int = 0,
    allow_pickle: bool = False,
) -> torch.nn.Module:
    """Builds an MMAction2 recognizer on the CPU, with checkpoint or seeded random weights."""
    import mmaction.models  # noqa: F401  (registers the recognizers, backbones and heads)
    from mmaction.registry import MODELS
    from mmengine.registry import DefaultScope

    cfg = copy.deepcopy(model_cfg)
    # nested parts (data_preprocessor, heads) resolve in the default scope: make it mmaction's
    with torch.random.fork_rng(devices=[]), DefaultScope.overwrite_default_scope("mmaction"):
        torch.manual_seed(seed)
        model = MODELS.build(cfg)
        if checkpoint is None:
            _quiet_init_weights(model)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, allow_pickle)
    return model


def load_checkpoint(model: torch.nn.Module, uri: str, allow_pickle: bool = False) -> None:
    """Loads an MMEngine checkpoint (or bare state dict) from any URI through
    :mod:`core.io.checkpoint`: tensors only unless ``allow_pickle`` (trusted files).

    Keys may carry DDP's ``module.`` prefix. A missing key is an error; unexpected keys are
    logged.
    """
    from core.io.checkpoint import load_state_dict_from

    state, sha256 = load_state_dict_from(uri, allow_pickle=allow_pickle)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(f"{uri}: checkpoint lacks {len(missing)} weights, e.g. {missing[:5]}")
    if unexpected:
        log.warning(
            "%s: ignoring %d unexpected keys, e.g. %s", uri, len(unexpected), unexpected[:5]
        )
    log.info("loaded %s (sha256 %s)", uri, sha256[:12])


def _quiet_init_weights(model: torch.nn.Module) -> None:
    """``init_weights`` (MMAction2's initialisers) without MMEngine's per-parameter log table."""
    from mmengine.logging import MMLogger

    # MMLogger lives outside logging's registry, so its level cache would ignore setLevel:
    # raise its handlers' levels instead.
    handlers = MMLogger.get_current_instance().handlers
    levels = [h.level for h in handlers]
    for handler in handlers:
        handler.setLevel(max(handler.level, logging.WARNING))
    try:
        model.init_weights()
    finally:
        for handler, level in zip(handlers, levels, strict=True):
            handler.setLevel(level)
