"""Encoding rendered frames as H.264 (yuv420p) MP4 with the libx264 inside the av wheel.

Shape legend: ``H``, ``W`` frame height and width in pixels; ``3`` RGB channels.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

import av
import cv2
import numpy as np

from core.corpus.plan import VideoSpec
from core.corpus.render import render_frames

X264_PRESET = "veryfast"
X264_CRF = 23


def check_encoder() -> None:
    """Raises ``RuntimeError`` when the installed av wheel cannot encode H.264."""
    if "libx264" not in av.codecs_available:
        raise RuntimeError(
            f"no H.264 encoder: this av wheel ({av.__version__}) was built without libx264"
        )


def encode_h264(
    frames_HW3: Iterable[np.ndarray], path: str, fps: float, width: int, height: int, threads: int
) -> None:
    """Encodes RGB uint8 frames (H x W x 3) as H.264 (yuv420p) MP4 at the local ``path``.

    Frame ``i`` gets the timestamp ``i / fps``; the index sits before the frames
    (``+faststart``).

    Args:
        threads: x264 threads; 0 lets x264 choose.
    """
    check_encoder()
    with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(str(fps)))
        codec = stream.codec_context
        codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
        codec.options = {"preset": X264_PRESET, "crf": str(X264_CRF), "threads": str(threads)}
        for i, frame_HW3 in enumerate(frames_HW3):
            # OpenCV's I420 conversion is BT.601 limited range, as swscale's, and ten times faster
            yuv_H2W = cv2.cvtColor(frame_HW3, cv2.COLOR_RGB2YUV_I420)  # H * 3/2 x W
            frame = av.VideoFrame.from_ndarray(yuv_H2W, format="yuv420p")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def write_video(spec: VideoSpec, path: str, threads: int = 0) -> None:
    """Renders ``spec`` and encodes it (:func:`encode_h264`): exactly ``spec.num_frames``
    frames at ``spec.fps``."""
    encode_h264(render_frames(spec), path, spec.fps, spec.width, spec.height, threads)
