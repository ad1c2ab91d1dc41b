"""Per-snippet features from an MMAction2 recognizer (TSN, SlowOnly, ...).

The recognizer is built from its MMAction2 config dict with ``mmaction.registry.MODELS`` and
run piece by piece: the recognizer's ``data_preprocessor`` mean/std normalise the uint8 clips
on the device, ``backbone`` makes the feature map, and then either

* ``output="scores"``: ``cls_head`` and a softmax, i.e. the class probabilities that MMAction2's
  ``average_clips='prob'`` gives for one clip (for TSN the head averages a snippet's frames, its
  segment consensus). Kinetics-400 TSN scores are the 400-d "class score" features of the
  ActivityNet ``400 x 100`` layout (``csv_mean_100``); or
* ``output="pooled"``: the backbone map averaged over space (and time / frames), e.g. 2048-d
  for ResNet-50, as ``clip_feature_extraction.py``'s ``FeatureHead`` with ``avg`` pooling;
  ``output="pooled_max"``: the same with ``max`` pooling over space (then averaged over time).

Only ``mmcv.cnn`` is used underneath (no ``mmcv.ops``), so mmcv-lite serves as well as mmcv.
Frames arrive as RGB (:mod:`core.video`), so the preprocessor's ``to_rgb`` is ignored.

Shape legend: N snippets, T frames per snippet, H x W crop, C channels (3 in, C' out), K classes.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import Any

import numpy as np
import torch

import core  # noqa: F401  (upstream shims before mmaction)
from core.features.config import ExtractorConfig

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class FeatureExtractor:
    """Maps batches of uint8 snippets (from any number of videos) to per-snippet features."""

    def __init__(
        self,
        cfg: ExtractorConfig,
        device: str = "cpu",
        seed: int = 0,
        allow_pickle: bool = False,
    ) -> None:
        """Builds the recognizer on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).

        Args:
            cfg: the extractor section; its ``dtype`` applies on CUDA only.
            device: where the recognizer runs.
            seed: seed of the random weights when ``cfg.checkpoint`` is None.
            allow_pickle: allow a checkpoint that needs full unpickling (runs code from the
                file): trusted files only.
        """
        self.cfg = cfg
        self.device = torch.device(device)
        self.dtype = DTYPES[cfg.dtype] if self.device.type == "cuda" else torch.float32
        self.model = build_recognizer(cfg.model, cfg.checkpoint, seed, allow_pickle)
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
    def extract(self, clips_NTHWC: np.ndarray | torch.Tensor) -> np.ndarray:
        """Features of each snippet, independent of how snippets are batched.

        Args:
            clips_NTHWC: uint8 RGB snippets, shape ``(N, T, H, W, 3)``, as
                :class:`core.video.SnippetBatch` holds them; N may be 0. A numpy array is
                copied to the device; a torch tensor already there (NVDEC's clips) is used
                where it lies, with no round trip through host memory.

        Returns:
            float32 array ``(N, feature_dim)``.
        """
        if not isinstance(clips_NTHWC, torch.Tensor):
            clips_NTHWC = np.asarray(clips_NTHWC)
        if clips_NTHWC.ndim != 5 or clips_NTHWC.shape[-1] != 3:
            raise ValueError(f"expected (N, T, H, W, 3) clips, got shape {clips_NTHWC.shape}")
        if len(clips_NTHWC) == 0:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        step = self.cfg.batch_size
        parts = [self._forward(clips_NTHWC[i : i + step]) for i in range(0, len(clips_NTHWC), step)]
        return np.concatenate(parts)

    def _forward(self, clips_NTHWC: np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(clips_NTHWC, torch.Tensor):
            x_NTHWC = clips_NTHWC.to(self.device)  # no copy when it is there already
        else:
            if not clips_NTHWC.flags.writeable:  # Ray hands out read-only views; torch owns
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
        elif self.cfg.output == "pooled_max":
            space = (3, 4) if self.is_3d else (2, 3)
            feats = fmap.float().amax(dim=space)  # (N, C', t) or (N*T, C')
            feats = feats.mean(dim=2) if self.is_3d else feats.reshape(n, t, -1).mean(dim=1)
        elif self.is_3d:
            feats = fmap.float().mean(dim=(2, 3, 4))
        else:
            feats = fmap.float().mean(dim=(2, 3)).reshape(n, t, -1).mean(dim=1)
        return feats.cpu().numpy()

    def _autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)


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
