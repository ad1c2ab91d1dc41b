"""What a video's container says before decoding: :func:`probe` and the container helpers
that :mod:`core.video.decode` opens videos with."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

import av

from core.video.errors import VideoDecodeError


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's first video stream (before decoding it)."""

    fps: float
    """Average frame rate (frames / duration); the nominal rate when the container lacks it."""
    num_frames: int
    """Frame count from the container, or ``round(duration * fps)`` when it has none. Only a
    header claim: :func:`core.video.iter_snippets` counts the frames it actually decodes."""
    duration: float
    """Seconds, from the stream (else the container); 0.0 when neither knows."""
    width: int
    """Coded width in pixels (snippets are turned upright by the frames' display rotation)."""
    height: int
    """Coded height in pixels."""
    codec: str
    """FFmpeg codec name, e.g. ``h264``, ``vp9``."""


def probe(path: str | BinaryIO) -> VideoInfo:
    """Reads the container header of a local video file (or a seekable binary file object,
    e.g. :class:`core.storage.StreamedInput`).

    Raises:
        VideoDecodeError: reason ``open``, ``no_video_stream`` or ``unsupported_codec``.
    """
    with open_container(path) as container:
        return video_info(container, video_stream(container, source_name(path)))


def source_name(source: str | BinaryIO) -> str:
    """What messages call a video: its path, or a file object's ``name`` (a URI)."""
    return source if isinstance(source, str) else str(getattr(source, "name", repr(source)))


@contextlib.contextmanager
def open_container(path: str | BinaryIO) -> Iterator[av.container.InputContainer]:
    """``av.open`` for reading a path or a seekable binary file object; any failure to open
    is a ``VideoDecodeError('open')``."""
    try:
        container = av.open(path, mode="r")
    except Exception as err:  # FFmpeg's errors, OSError, and whatever else PyAV raises
        raise VideoDecodeError(VideoDecodeError.OPEN, str(err), source_name(path)) from err
    try:
        yield container
    finally:
        container.close()


def video_stream(container: av.container.InputContainer, path: str) -> av.video.VideoStream:
    """The container's first video stream, if FFmpeg has a decoder for it.

    Raises:
        VideoDecodeError: reason ``no_video_stream`` or ``unsupported_codec``.
    """
    if not container.streams.video:
        raise VideoDecodeError(VideoDecodeError.NO_VIDEO_STREAM, "no video stream", path)
    stream = container.streams.video[0]
    if stream.codec_context is None:  # FFmpeg knows no decoder for the stream's codec tag
        raise VideoDecodeError(
            VideoDecodeError.UNSUPPORTED_CODEC, "no decoder for the video codec", path
        )
    return stream


def video_info(container: av.container.InputContainer, stream: av.video.VideoStream) -> VideoInfo:
    """The header's claims about ``stream``, with the fallbacks :class:`VideoInfo` describes."""
    duration = 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(25)
    fps = float(rate)
    num_frames = stream.frames or round(duration * fps)
    return VideoInfo(
        fps, int(num_frames), duration, stream.width, stream.height, stream.codec_context.name
    )
