"""The snippet feature extractor's settings (the ``extractor`` section of an extract config).

Torch-free, so that configs load and validate without importing the model stack.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

OUTPUTS = ("scores", "pooled", "pooled_max")


@dataclasses.dataclass
class ExtractorConfig:
    """An MMAction2 recognizer that turns snippets into feature vectors, and its actors."""

    model: dict[str, Any]
    """MMAction2 recognizer config dict (``Recognizer2D``/``Recognizer3D`` with a backbone, a
    ``cls_head`` and an ``ActionDataPreprocessor``); presets in ``configs/_base_/models/``."""
    checkpoint: str | None = None
    """URI of an MMEngine checkpoint (``{'state_dict': ...}``) or a bare state dict; ``None``
    gives random weights from the job's seed (tests, demos)."""
    output: Literal["scores", "pooled", "pooled_max"] = "scores"
    """``scores``: softmax class scores (TSN-style 400-d); ``pooled``: pooled backbone
    features (e.g. 2048-d for ResNet-50); ``pooled_max``: the same, max-pooled over space
    (MMAction2 ``FeatureHead(spatial_type='max')``), which keeps a small object's response."""
    batch_size: int = 64
    """Most snippets per forward pass, across videos; larger inputs are split (results are
    identical however snippets are batched)."""
    num_actors: int = 2
    """Decoding + extracting actors; each reserves one CPU."""
    num_gpus: float = 0.0
    """GPU share per actor (e.g. 1/12 with 12 actors on one GPU); 0 on CPU."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Autocast dtype on CUDA (outputs stay float32); the CPU always runs float32."""
    channels_last: bool = True
    """Channels-last memory format for the backbone on CUDA (ignored on CPU)."""
    videos_per_call: int = 4
    """Videos handed to an actor at a time (their snippets share batches)."""

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        for name in ("batch_size", "num_actors", "videos_per_call"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_gpus < 0:
            raise ValueError(f"num_gpus must be >= 0, got {self.num_gpus}")

    @property
    def name(self) -> str:
        """What the features table records as the extractor, e.g. ``Recognizer2D/scores``."""
        return f"{self.model.get('type', 'recognizer')}/{self.output}"

    @property
    def feature_dim(self) -> int | None:
        """Length of one snippet's feature vector as the config states it (None if unstated):
        the head's ``num_classes`` for scores, its ``in_channels`` for pooled features."""
        head = self.model.get("cls_head", {})
        return head.get("num_classes" if self.output == "scores" else "in_channels")
