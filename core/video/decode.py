"""Streaming video decoding and snippet sampling for feature extraction.

Decoder: PyAV (FFmpeg's libraries, frame threads ``AUTO``), chosen by ``benchmarks/decode.py``
(results in ``benchmarks/results/decode_cpu.json``): as fast as decord and OpenCV at sparse
sampling on this machine, and the only one of the three that streams frame by frame, reports
every failure as a Python exception, and lets us convert only the frames we keep.

Sampling mirrors MMAction2's long-video feature extraction (``UntrimmedSampleFrames`` in
``mmaction/datasets/transforms/loading.py``, used by
``tools/data/activitynet/tsn_extract_video_feat_config.py`` and
``tools/misc/clip_feature_extraction.py --long-video-mode``), with MMAction2's names:
snippet ``k`` is centred on frame ``c_k = clip_interval // 2 + k * clip_interval`` for every
``c_k < num_frames`` and takes ``clip_len`` frames ``frame_interval`` apart around it, indices
clipped to ``[0, num_frames - 1]``. Each frame is then resized as MMAction2's
``Resize(scale=(-1, short_side))`` does (aspect kept, ``cv2.INTER_LINEAR`` as ``mmcv.imresize``)
and centre-cropped as ``CenterCrop(crop_size)``. Two deliberate differences: frames are counted
while decoding (container counts are often wrong), and a video too short for MMAction2's first
centre (fewer than ``clip_interval // 2 + 1`` frames) gets one snippet centred on its middle
frame instead of none. Display rotation (phone videos) is applied, as ``ffmpeg`` does.

Normalisation (mean/std) is NOT done here: clips leave as uint8 RGB, four times smaller than
float32 through Ray's object store, and the recognizer's own ``data_preprocessor`` settings
normalise them on the accelerator (:class:`core.features.extractor.FeatureExtractor`).

Shape legend: N snippets in a batch, T frames per snippet (``clip_len``), H = W = ``crop_size``,
C = 3 colour channels (RGB).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import cv2
import numpy as np

log = logging.getLogger(__name__)


class VideoDecodeError(Exception):
    """A video that cannot be turned into snippets; ``reason`` names the cause.

    Reasons: ``open`` (not a readable media file: missing, empty, not a container, truncated
    before its index), ``no_video_stream`` (e.g. audio only), ``unsupported_codec`` (no decoder
    for the stream's codec), ``zero_frames`` (a video stream with no frames), ``decode`` (the
    stream has packets but none decoded into a frame).
    """

    OPEN = "open"
    NO_VIDEO_STREAM = "no_video_stream"
    UNSUPPORTED_CODEC = "unsupported_codec"
    ZERO_FRAMES = "zero_frames"
    DECODE = "decode"
    REASONS = (OPEN, NO_VIDEO_STREAM, UNSUPPORTED_CODEC, ZERO_FRAMES, DECODE)

    def __init__(self, reason: str, message: str, path: str = "") -> None:
        if reason not in self.REASONS:
            raise ValueError(f"unknown reason {reason!r}; expected one of {self.REASONS}")
        super().__init__(f"[{reason}] {message}" + (f" ({path})" if path else ""))
        self.reason = reason
        self.message = message
        self.path = path

    def __reduce__(self):  # picklable across Ray workers despite the custom signature
        return (type(self), (self.reason, self.message, self.path))


@dataclass(frozen=True)
class SamplingConfig:
    """How snippets are sampled from an untrimmed video (MMAction2's names and meanings)."""

    clip_len: int = 1
    """Frames per snippet: 1 for TSN (RGB), 8 for SlowOnly 8x8."""
    clip_interval: int = 16
    """Frames between the centres of adjacent snippets, i.e. the snippet stride: 16 for the
    ActivityNet features (``UntrimmedSampleFrames(clip_interval=16)``)."""
    frame_interval: int = 1
    """Frames between consecutive sampled frames inside one snippet: 1 for TSN, 8 for
    SlowOnly 8x8 (a snippet then spans 57 frames)."""
    short_side: int = 256
    """The shorter image side after resizing, aspect ratio kept (``Resize(scale=(-1, 256))``)."""
    crop_size: int = 256
    """Side of the square centre crop (``CenterCrop``); at most ``short_side``. MMAction2's
    ActivityNet TSN config uses 256, Kinetics validation configs 224."""
    batch_size: int = 32
    """Snippets per yielded batch; bounds memory together with ``crop_size`` and ``clip_len``."""
    decode_threads: int = 0
    """FFmpeg decoder threads per video, 0 = one per core. Set it to the CPUs each Ray decode
    task reserves so that parallel tasks do not oversubscribe the node."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            minimum = 0 if field.name == "decode_threads" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"SamplingConfig.{field.name} must be an int >= {minimum}")
        if self.crop_size > self.short_side:
            raise ValueError(f"crop_size {self.crop_size} > short_side {self.short_side}")

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> SamplingConfig:
        """Builds from a config dict; an unknown key is an error (typos must not pass)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(cfg) - known
        if unknown:
            raise KeyError(f"unknown SamplingConfig keys {sorted(unknown)}; known {sorted(known)}")
        return cls(**cfg)

    def frame_offsets(self) -> np.ndarray:
        """Offsets of a snippet's frames from its centre frame, as ``UntrimmedSampleFrames``:
        ``[-(T // 2) * fi, ..., (T - T // 2 - 1) * fi]``; shape ``(T,)``."""
        start = -(self.clip_len // 2) * self.frame_interval
        return start + self.frame_interval * np.arange(self.clip_len, dtype=np.int64)

    def num_snippets(self, num_frames: int) -> int:
        """Snippets that a video of ``num_frames`` frames yields (0 frames: 0)."""
        if num_frames <= 0:
            return 0
        return max(1, len(range(self.clip_interval // 2, num_frames, self.clip_interval)))


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's first video stream (before decoding it)."""

    fps: float
    """Average frame rate (frames / duration); the nominal rate when the container lacks it."""
    num_frames: int
    """Frame count from the container, or ``round(duration * fps)`` when it has none. Only a
    header claim: :func:`iter_snippets` counts the frames it actually decodes."""
    duration: float
    """Seconds, from the stream (else the container); 0.0 when neither knows."""
    width: int
    """Coded width in pixels (snippets are turned upright by the frames' display rotation)."""
    height: int
    """Coded height in pixels."""
    codec: str
    """FFmpeg codec name, e.g. ``h264``, ``vp9``."""


@dataclass
class SnippetBatch:
    """Up to ``batch_size`` consecutive snippets of one video, in order."""

    clips_NTHWC: np.ndarray
    """uint8 RGB clips, shape ``(N, T, H, W, 3)``, not normalised."""
    snippet_index_N: np.ndarray
    """int64 position of each snippet in the video's snippet sequence (0, 1, ...)."""
    center_frame_N: np.ndarray
    """int64 decoded-frame index of each snippet's centre frame."""
    center_time_N: np.ndarray
    """float64 presentation time (seconds from the stream start) of each centre frame; correct
    for variable frame rate too."""
    info: VideoInfo
    """The container's claims (see :func:`probe`)."""
    num_frames: int
    """Frames decoded so far; on the last batch, the video's true frame count."""
    duration: float
    """Seconds decoded so far (last frame's time plus one frame); true duration on the last."""
    is_last: bool
    """Whether this is the video's last batch (then ``num_frames``/``duration`` are final)."""


def probe(path: str) -> VideoInfo:
    """Reads the container header of a local video file.

    Raises:
        VideoDecodeError: reason ``open``, ``no_video_stream`` or ``unsupported_codec``.
    """
    with _open(path) as container:
        return _video_info(container, _video_stream(container, path))


def iter_snippets(path: str, cfg: SamplingConfig) -> Iterator[SnippetBatch]:
    """Decodes a local video once, front to back, and yields its snippets in batches.

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
        path: local file (use ``core.storage.local_path`` for remote URIs).
        cfg: the sampling settings.

    Yields:
        Batches of snippets in order; at least one, none empty, the last with ``is_last``.

    Raises:
        VideoDecodeError: the video cannot be opened or yields no frame (see its ``reason``).
    """
    with _open(path) as container:
        stream = _video_stream(container, path)
        info = _video_info(container, stream)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = cfg.decode_threads
        assembler = _SnippetAssembler(cfg, info.fps)
        decoded = _DecodedFrames(container, stream, path)
        pending: list[_Snippet] = []
        for index, frame in enumerate(decoded):
            pending.extend(assembler.add(index, frame))
            while len(pending) > cfg.batch_size:  # keep one back: the last batch is never empty
                yield _batch(pending[: cfg.batch_size], info, assembler, is_last=False)
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
            yield _batch(pending[: cfg.batch_size], info, assembler, is_last=False)
            del pending[: cfg.batch_size]
        yield _batch(pending, info, assembler, is_last=True)


# ----------------------------------------------------------------------------- container


@contextlib.contextmanager
def _open(path: str) -> Iterator[av.container.InputContainer]:
    """``av.open`` for reading; any failure to open is a ``VideoDecodeError('open')``."""
    try:
        container = av.open(path, mode="r")
    except Exception as err:  # FFmpeg's errors, OSError, and whatever else PyAV raises
        raise VideoDecodeError(VideoDecodeError.OPEN, str(err), path) from err
    try:
        yield container
    finally:
        container.close()


def _video_stream(container: av.container.InputContainer, path: str) -> av.video.VideoStream:
    if not container.streams.video:
        raise VideoDecodeError(VideoDecodeError.NO_VIDEO_STREAM, "no video stream", path)
    stream = container.streams.video[0]
    if stream.codec_context is None:  # FFmpeg knows no decoder for the stream's codec tag
        raise VideoDecodeError(
            VideoDecodeError.UNSUPPORTED_CODEC, "no decoder for the video codec", path
        )
    return stream


def _video_info(container: av.container.InputContainer, stream: av.video.VideoStream) -> VideoInfo:
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


def _quarter_turns(rotation: float) -> int:
    """``np.rot90`` turns that show a frame as ffmpeg's autorotation does."""
    return round(rotation / 90) % 4


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


# ----------------------------------------------------------------------------- sampling


@dataclass
class _Snippet:
    index: int
    center_frame: int
    frames: list[np.ndarray | None]  # T crops, (H, W, 3) uint8 each
    center_time: float = float("nan")


class _SnippetAssembler:
    """Turns frames arriving in order into snippets, keeping only crops still needed.

    Frame ``i`` fills slot ``j`` of snippet ``k`` when ``c_k + offsets[j] == i``; frame 0 also
    fills the slots whose index is negative, the last frame the slots past the end (MMAction2
    clips indices to the video). Snippet ``k`` is complete when frame ``c_k + offsets[-1]``
    arrives, or at the end of the video if that frame never does.
    """

    def __init__(self, cfg: SamplingConfig, fps: float) -> None:
        self.cfg, self.fps = cfg, fps
        self.offsets_T = cfg.frame_offsets()
        self.first_center = cfg.clip_interval // 2
        self.open: dict[int, _Snippet] = {}  # snippet index -> snippet being filled
        self.head: list[tuple[np.ndarray, float]] = []  # crops of frames before the 1st centre
        self.num_frames = 0
        self.emitted = 0
        self.last_frame: av.VideoFrame | None = None  # uncropped, for end padding
        self.last_time = 0.0
        self.last_step = 0.0
        self.frame_step = 1.0 / fps if fps > 0 else 0.0
        self.start_time: float | None = None

    def add(self, index: int, frame: av.VideoFrame) -> list[_Snippet]:
        """Takes decoded frame ``index``; returns the snippets it completes, in order."""
        self.num_frames = index + 1
        time = self._time(index, frame)
        self.last_step = _frame_duration(frame) or (time - self.last_time if index else 0.0)
        self.last_frame, self.last_time = frame, time
        slots = self._slots(index)
        keep_for_head = index < self.first_center
        if not slots and not keep_for_head:
            return []
        crop = _to_crop(frame, self.cfg.short_side, self.cfg.crop_size)
        if keep_for_head:
            self.head.append((crop, time))
        for k, j in slots:
            snippet = self.open.setdefault(
                k, _Snippet(k, self._center(k), [None] * self.cfg.clip_len)
            )
            snippet.frames[j] = crop
            if snippet.center_frame == index:
                snippet.center_time = time
        if index >= self.first_center:
            self.head.clear()
        done, rem = divmod(
            index - int(self.offsets_T[-1]) - self.first_center, self.cfg.clip_interval
        )
        if rem == 0 and done in self.open:  # this frame was the snippet's last one
            self.emitted += 1
            return [self.open.pop(done)]
        return []

    def finish(self) -> list[_Snippet]:
        """Ends the video: pads and returns the snippets still open whose centre exists."""
        total = self.num_frames
        if self.emitted == 0 and total <= self.first_center:
            return [self._short_video_snippet()]
        out = []
        last_crop = None
        for k in sorted(self.open):
            snippet = self.open.pop(k)
            if snippet.center_frame >= total:
                continue  # MMAction2 samples centres < num_frames only
            if any(f is None for f in snippet.frames):
                if last_crop is None:
                    last_crop = _to_crop(self.last_frame, self.cfg.short_side, self.cfg.crop_size)
                snippet.frames = [last_crop if f is None else f for f in snippet.frames]
            out.append(snippet)
        self.emitted += len(out)
        self.last_frame = None
        return out

    def duration(self) -> float:
        """End of the last decoded frame: its time plus its duration (or the last gap)."""
        if not self.num_frames:
            return 0.0
        return self.last_time + (self.last_step or self.frame_step)

    def _short_video_snippet(self) -> _Snippet:
        total = self.num_frames
        center = (total - 1) // 2
        indices = np.clip(center + self.offsets_T, 0, total - 1)
        frames = [self.head[i][0] for i in indices]
        return _Snippet(0, center, frames, self.head[center][1])

    def _center(self, k: int) -> int:
        return self.first_center + k * self.cfg.clip_interval

    def _slots(self, index: int) -> list[tuple[int, int]]:
        """(snippet, slot) pairs that frame ``index`` fills."""
        slots = []
        for j, offset in enumerate(self.offsets_T.tolist()):
            k, rem = divmod(index - offset - self.first_center, self.cfg.clip_interval)
            if rem == 0 and k >= 0:
                slots.append((k, j))
            if index == 0 and offset < 0:  # negative indices clip to frame 0
                k = 0
                while self._center(k) + offset < 0:
                    slots.append((k, j))
                    k += 1
        return slots

    def _time(self, index: int, frame: av.VideoFrame) -> float:
        if frame.time is None:
            return index * self.frame_step
        if self.start_time is None:
            self.start_time = frame.time
        return frame.time - self.start_time


def _frame_duration(frame: av.VideoFrame) -> float:
    """Seconds the frame is shown, when the container says (0.0 otherwise)."""
    if frame.duration and frame.time_base:
        return float(frame.duration * frame.time_base)
    return 0.0


def _to_crop(frame: av.VideoFrame, short_side: int, crop_size: int) -> np.ndarray:
    """RGB, display rotation, short side resize and centre crop of one frame: (H, W, 3) uint8."""
    rgb_HWC = frame.to_ndarray(format="rgb24")
    turns = _quarter_turns(frame.rotation or 0)
    if turns:
        rgb_HWC = np.rot90(rgb_HWC, turns)
    return resize_crop(rgb_HWC, short_side, crop_size)


def resize_crop(img_HWC: np.ndarray, short_side: int, crop_size: int) -> np.ndarray:
    """MMAction2's ``Resize(scale=(-1, short_side))`` then ``CenterCrop(crop_size)``.

    The resize follows ``mmcv.rescale_size``/``mmcv.imresize``: scale ``short_side / min(h, w)``,
    new sides ``int(side * scale + 0.5)``, bilinear (``cv2.INTER_LINEAR``); the crop takes
    ``left = (w - crop) // 2`` and ``top = (h - crop) // 2``.
    """
    h, w = img_HWC.shape[:2]
    scale = short_side / min(h, w)
    new_w, new_h = int(w * scale + 0.5), int(h * scale + 0.5)
    img_HWC = cv2.resize(np.ascontiguousarray(img_HWC), (new_w, new_h), cv2.INTER_LINEAR)
    top, left = (new_h - crop_size) // 2, (new_w - crop_size) // 2
    return np.ascontiguousarray(img_HWC[top : top + crop_size, left : left + crop_size])


def _batch(
    snippets: list[_Snippet], info: VideoInfo, assembler: _SnippetAssembler, is_last: bool
) -> SnippetBatch:
    cfg = assembler.cfg
    if snippets:
        clips_NTHWC = np.stack([np.stack(s.frames) for s in snippets])
    else:
        clips_NTHWC = np.zeros((0, cfg.clip_len, cfg.crop_size, cfg.crop_size, 3), np.uint8)
    return SnippetBatch(
        clips_NTHWC=clips_NTHWC,
        snippet_index_N=np.array([s.index for s in snippets], dtype=np.int64),
        center_frame_N=np.array([s.center_frame for s in snippets], dtype=np.int64),
        center_time_N=np.array([s.center_time for s in snippets], dtype=np.float64),
        info=info,
        num_frames=assembler.num_frames,
        duration=assembler.duration(),
        is_last=is_last,
    )
