"""Snippet features: the recognizer that makes them and their rescaling to T positions.

``core.features.extractor`` (torch, mmaction) loads on first use, so that CPU stages that only
rescale, and config loading, do not import torch.
"""

from core.features.config import ExtractorConfig
from core.features.rescale import rescale_features

__all__ = ["ExtractorConfig", "FeatureExtractor", "build_recognizer", "rescale_features"]


def __getattr__(name: str):
    if name in ("FeatureExtractor", "build_recognizer"):
        from core.features import extractor

        return getattr(extractor, name)
    raise AttributeError(f"module 'core.features' has no attribute {name!r}")
