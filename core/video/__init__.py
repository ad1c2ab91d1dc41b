"""Video decoding and snippet sampling (CPU side of feature extraction).

Modules, in the order a video goes through them:

* :mod:`~core.video.probe`: what the container says (:class:`VideoInfo`, :func:`probe`);
* :mod:`~core.video.decode`: streaming decode with PyAV (:func:`iter_snippets`);
* :mod:`~core.video.sample`: which frames make which snippet (:class:`SamplingConfig`,
  :class:`SnippetBatch`), as MMAction2's ``UntrimmedSampleFrames``;
* :mod:`~core.video.transforms`: a frame to an upright resized centre crop (:func:`resize_crop`);
* :mod:`~core.video.errors`: :class:`VideoDecodeError`, whose ``reason`` names the cause.
"""

from core.video.decode import iter_snippets
from core.video.errors import VideoDecodeError
from core.video.probe import VideoInfo, probe
from core.video.sample import SamplingConfig, SnippetBatch
from core.video.transforms import resize_crop

__all__ = [
    "SamplingConfig",
    "SnippetBatch",
    "VideoDecodeError",
    "VideoInfo",
    "iter_snippets",
    "probe",
    "resize_crop",
]
