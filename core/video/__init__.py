"""Video decoding and snippet sampling (CPU side of feature extraction).

Modules, in the order a video goes through them:

* :mod:`~core.video.probe`: what the container says (:class:`VideoInfo`, :func:`probe`);
* :mod:`~core.video.decode`: streaming decode with PyAV (:func:`iter_snippets`);
* :mod:`~core.video.sample`: which frames make which snippet (:class:`SamplingConfig`,
  :class:`SnippetBatch`), as MMAction2's ``UntrimmedSampleFrames``;
* :mod:`~core.video.transforms`: a frame to an upright resized centre crop (:func:`resize_crop`);
* :mod:`~core.video.errors`: :class:`VideoDecodeError`, whose ``reason`` names the cause;
* :mod:`~core.video.backend`: the decoder ``sampling.decoder`` picks (:class:`SnippetDecoder`):
  the CPU path above or :mod:`~core.video.nvdec` (NVDEC on the GPU, with
  :mod:`~core.video.gpu_transforms`), both cutting the snippets :func:`snippet_frames` names.
"""

from core.video.backend import NvdecUnavailableError, SnippetDecoder
from core.video.decode import iter_snippets
from core.video.errors import VideoDecodeError
from core.video.probe import VideoInfo, probe
from core.video.sample import SamplingConfig, SnippetBatch, snippet_frames
from core.video.transforms import resize_crop

__all__ = [
    "NvdecUnavailableError",
    "SamplingConfig",
    "SnippetBatch",
    "SnippetDecoder",
    "VideoDecodeError",
    "VideoInfo",
    "iter_snippets",
    "probe",
    "resize_crop",
    "snippet_frames",
]
