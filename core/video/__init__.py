"""Video decoding and snippet sampling (CPU side of feature extraction)."""

from core.video.decode import (
    SamplingConfig,
    SnippetBatch,
    VideoDecodeError,
    VideoInfo,
    iter_snippets,
    probe,
)

__all__ = [
    "SamplingConfig",
    "SnippetBatch",
    "VideoDecodeError",
    "VideoInfo",
    "iter_snippets",
    "probe",
]
