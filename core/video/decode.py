"""Streaming video decoding: :func:`iter_snippets` decodes a video once, front to back, and
hands its frames to the snippet sampler (:mod:`core.video.sample`).

Decoder: PyAV (FFmpeg's libraries, frame threads ``AUTO``), chosen by ``benchmarks/decode.py``
(results in ``benchmarks/results/decode_cpu.json``): as fast as decord and OpenCV at sparse
sampling on this machine, and the only one of the three that streams frame by frame, reports
every failure as a Python exception, and lets us convert only the frames we keep. A damaged
packet is counted and skipped, a demuxer that gives up ends the stream; both are warned about.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import BinaryIO

import av

from core.video.errors import VideoDecodeError
from core.video.probe import (
    VideoInfo,
    open_container,
    source_name,
    video_info,
    video_stream,
)
from core.video.sample import SamplingConfig, Snippet, SnippetAssembler, SnippetBatch

log = logging.getLogger(__name__)


def iter_snippets(source: str | BinaryIO, cfg: SamplingConfig) -> Iterator[SnippetBatch]:
    """Decodes a video once, front to back, and yields its snippets in batches.

    Memory is bounded whatever the video's length (a one-hour 720p video needs what a
    one-minute one does) because (1) decoding streams packet by packet, so the decoder holds
    only its reference frames and the frames its threads have in flight; (2) a decoded frame
    is converted to RGB, resized and cropped only if some snippet uses it, and only the small
    crop is kept; (3) crops are held only until the snippets that use them are complete,
    which is at most ``ceil(span / clip_interval) + 1`` snippets for a snippet spanning
    ``span = (clip_len - 1) * frame_interval + 1`` frames; (4) finished snippets leave in
    batches of ``batch_size``. Peak: decoder buffers (about 16 + 2 x threads full-size frames)
    plus ``2 x batch_size x clip_len x crop_size^2 x 3`` bytes. Measured peak RSS of a whole
    process (``benchmarks/decode.py``, 720p H.264, 2 cores, ~96 MiB of it Python and libraries):
    TSN 1x16 crop 256: 158 MiB for 5 minutes, 163 MiB for one hour; SlowOnly 8x8 crop 224:
    250 MiB for 5 minutes.

    A truncated or partly corrupt file yields the frames that decode, with a warning when
    fewer arrive than the header promised; the snippets cover those frames only.

    Args:
        source: a local file path (a remote video downloaded by ``core.storage.local_path``)
            or a seekable binary file object (one streamed by ``core.storage.open_input``).
        cfg: the sampling settings.

    Yields:
        Batches of snippets in order; at least one, none empty, the last with ``is_last``.

    Raises:
        VideoDecodeError: the video cannot be opened or yields no frame (see its ``reason``).
    """
    path = source_name(source)
    with open_container(source) as container:
        stream = video_stream(container, path)
        info = video_info(container, stream)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = cfg.decode_threads
        assembler = SnippetAssembler(cfg, info.fps)
        decoded = _DecodedFrames(container, stream, path)
        pending: list[Snippet] = []
        for index, frame in enumerate(decoded):
            pending.extend(assembler.add(index, frame))
            while len(pending) > cfg.batch_size:  # keep one back: the last batch is never empty
                yield assembler.batch(pending[: cfg.batch_size], info, is_last=False)
                del pending[: cfg.batch_size]
        if assembler.num_frames == 0:
            if decoded.errors:
                raise VideoDecodeError(
                    VideoDecodeError.DECODE,
                    f"no frame decoded; {decoded.errors} packets failed, last: {decoded.last_error}",
                    path,
                )
            raise VideoDecodeError(VideoDecodeError.ZERO_FRAMES, "video stream has no frames", path)
        _warn_if_short(path, info, assembler.num_frames, decoded)
        pending.extend(assembler.finish())
        while len(pending) > cfg.batch_size:
            yield assembler.batch(pending[: cfg.batch_size], info, is_last=False)
            del pending[: cfg.batch_size]
        last = assembler.batch(pending, info, is_last=True)
        yield dataclasses.replace(
            last, num_decode_errors=decoded.errors, truncated=decoded.truncated
        )


class _DecodedFrames:
    """Iterates decoded frames; a failing packet is counted and skipped, a failing demuxer
    (file cut short) ends the stream. Neither raises: the caller decides from the counts."""

    def __init__(self, container, stream, path: str) -> None:
        self.container, self.stream, self.path = container, stream, path
        self.errors = 0
        self.last_error: Exception | None = None
        self.truncated = False

    def __iter__(self) -> Iterator[av.VideoFrame]:
        packets = self.container.demux(self.stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as err:  # demuxer gave up: treat as end of file
                self.truncated, self.last_error = True, err
                return
            try:
                frames = packet.decode()  # the final empty packet flushes the decoder
            except av.error.FFmpegError as err:
                self.errors, self.last_error = self.errors + 1, err
                continue
            yield from frames


def _warn_if_short(path: str, info: VideoInfo, num_frames: int, decoded: _DecodedFrames) -> None:
    if decoded.errors or decoded.truncated:
        log.warning(
            "%s: %d packets failed to decode%s; using the %d frames that decoded (last error: %s)",
            path,
            decoded.errors,
            ", demuxing stopped early" if decoded.truncated else "",
            num_frames,
            decoded.last_error,
        )
    if info.num_frames and num_frames < info.num_frames - 1:
        log.warning(
            "%s: header says %d frames, %d decoded (truncated?); using the decoded frames",
            path,
            info.num_frames,
            num_frames,
        )
