"""Streaming decode of what spatio-temporal detection needs: the keyframes and their clips.

A video is decoded once, front to back (PyAV). Frame ``i`` is converted to RGB and resized
only if it is a keyframe or a frame of some keyframe's clip (with the demo's 8 x 8 clips every
8 frames, one frame in 8); a keyframe leaves, with its clip, as soon as its clip's last frame
has been decoded, so memory holds one clip span of resized frames whatever the video's length.

Resizing is MMAction2's ``Resize(scale=(-1, short_side))`` / the demo's
``mmcv.imresize(img, mmcv.rescale_size((w, h), (short_side, np.inf)))``: scale
``short_side / min(h, w)``, sides ``int(side * scale + 0.5)``, bilinear.

Shape legend: K keyframes in a block, T frames per clip, H x W decoded frame, h x w resized.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import av
import cv2
import numpy as np

from core.detect.config import KeyframeSampling
from core.video.errors import VideoDecodeError
from core.video.probe import VideoInfo, open_container, video_info, video_stream

log = logging.getLogger(__name__)


@dataclasses.dataclass
class KeyframeBlock:
    """Up to ``keyframes_per_block`` consecutive keyframes of one video, with their clips."""

    frame_index_K: np.ndarray  # int64, 0-based
    timestamp_K: np.ndarray  # float64 seconds from the first frame
    keyframes: list[np.ndarray]  # K x (H, W, 3) uint8 RGB (or resized: detector.short_side)
    clips_KThw3: np.ndarray  # uint8 RGB, frames resized to sampling.short_side


@dataclasses.dataclass
class DecodeFacts:
    """What decoding a whole video found."""

    info: VideoInfo | None = None
    num_frames: int = 0
    num_keyframes: int = 0
    duration: float = 0.0


def resized_size(w: int, h: int, short_side: int) -> tuple[int, int]:
    """``mmcv.rescale_size((w, h), (short_side, inf))``: the (w, h) of the resized frame."""
    scale = short_side / min(h, w)
    return int(w * scale + 0.5), int(h * scale + 0.5)


def resize_short_side(img_HW3: np.ndarray, short_side: int) -> np.ndarray:
    h, w = img_HW3.shape[:2]
    new_w, new_h = resized_size(w, h, short_side)
    if (new_w, new_h) == (w, h):
        return img_HW3
    return cv2.resize(img_HW3, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


def upright_rgb(frame: av.VideoFrame) -> np.ndarray:
    """The frame as RGB uint8, turned by its display rotation as ffmpeg's autorotation does."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = round((frame.rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def iter_frames(
    path: str, decode_threads: int = 1
) -> Iterator[tuple[int, av.VideoFrame, VideoInfo]]:
    """Decoded frames of a local video with their 0-based index; a packet that fails is
    skipped, a demuxer that gives up ends the stream (both logged).

    Raises:
        VideoDecodeError: the video cannot be opened, has no video stream or no decoder.
    """
    with open_container(path) as container:
        stream = video_stream(container, path)
        info = video_info(container, stream)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = decode_threads
        packets = container.demux(stream)
        index, errors = 0, 0
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as err:
                log.warning("%s: demuxing stopped early (%s)", path, err)
                break
            try:
                frames = packet.decode()
            except av.error.FFmpegError as err:
                errors += 1
                if errors == 1:
                    log.warning("%s: a packet failed to decode (%s)", path, err)
                continue
            for frame in frames:
                yield index, frame, info
                index += 1
        if index == 0:
            reason = VideoDecodeError.DECODE if errors else VideoDecodeError.ZERO_FRAMES
            raise VideoDecodeError(reason, f"no frame decoded ({errors} packets failed)", path)


def iter_keyframes(
    path: str, cfg: KeyframeSampling, detector_short_side: int | None, facts: DecodeFacts | None
) -> Iterator[KeyframeBlock]:
    """Decodes a local video once and yields its keyframes and clips in blocks, in order.

    ``facts`` (if given) is filled in as decoding goes; complete once the iterator ends.
    A video shorter than one clip window yields nothing (and is not an error).
    """
    first = cfg.window // 2 - 1
    offsets = np.asarray(cfg.clip_offsets(), np.int64)
    last_off = int(offsets[-1])
    step = cfg.predict_stepsize
    resized: dict[int, np.ndarray] = {}  # frame index -> resized frame, while a clip needs it
    keyframes: dict[int, tuple[float, np.ndarray]] = {}
    block: list[tuple[int, float, np.ndarray, np.ndarray]] = []
    t0 = None
    for i, frame, info in iter_frames(path, cfg.decode_threads):
        if facts is not None and facts.info is None:
            facts.info = info
        t = float(frame.time) if frame.time is not None else i / info.fps
        t0 = t if t0 is None else t0
        is_key = i >= first and (i - first) % step == 0
        in_clip = any(c >= first and (c - first) % step == 0 for c in (i - offsets).tolist())
        if is_key or in_clip:
            rgb = upright_rgb(frame)
            if in_clip:
                resized[i] = resize_short_side(rgb, cfg.short_side)
            if is_key:
                det = (
                    rgb
                    if detector_short_side is None
                    else resize_short_side(rgb, detector_short_side)
                )
                keyframes[i] = (t - t0, det)
        c = i - last_off  # the keyframe whose clip this frame completes
        if c in keyframes:
            t_c, det = keyframes.pop(c)
            block.append((c, t_c, det, np.stack([resized[c + o] for o in offsets.tolist()])))
            if facts is not None:
                facts.num_keyframes += 1
            for j in [j for j in resized if j < c + step + int(offsets[0])]:
                del resized[j]  # no later clip starts before the next keyframe's first frame
            if len(block) >= cfg.keyframes_per_block:
                yield _block(block)
                block = []
        if facts is not None:
            facts.num_frames = i + 1
            facts.duration = (t - t0) + 1.0 / (info.fps or 25.0)
    if block:
        yield _block(block)


def _block(items: list[tuple[int, float, np.ndarray, np.ndarray]]) -> KeyframeBlock:
    return KeyframeBlock(
        frame_index_K=np.asarray([c for c, _, _, _ in items], np.int64),
        timestamp_K=np.asarray([t for _, t, _, _ in items], np.float64),
        keyframes=[k for _, _, k, _ in items],
        clips_KThw3=np.stack([clip for _, _, _, clip in items]),
    )
