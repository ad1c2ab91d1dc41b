"""Snippet sampling: which decoded frames make which snippet, and the batches they leave in.

Sampling mirrors MMAction2's long-video feature extraction (``UntrimmedSampleFrames`` in
``mmaction/datasets/transforms/loading.py``, used by
``tools/data/activitynet/tsn_extract_video_feat_config.py`` and
``tools/misc/clip_feature_extraction.py --long-video-mode``), with MMAction2's names:
snippet ``k`` is centred on frame ``c_k = clip_interval // 2 + k * clip_interval`` for every
``c_k < num_frames`` and takes ``clip_len`` frames ``frame_interval`` apart around it, indices
clipped to ``[0, num_frames - 1]``. Each frame is resized and centre-cropped by
:func:`core.video.transforms.frame_to_crop`. Two deliberate differences: frames are counted
while decoding (container counts are often wrong), and a video too short for MMAction2's first
centre (fewer than ``clip_interval // 2 + 1`` frames) gets one snippet centred on its middle
frame instead of none.

Shape legend: N snippets in a batch, T frames per snippet (``clip_len``), H = W = ``crop_size``,
C = 3 colour channels (RGB).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import av
import numpy as np

from core.video.probe import VideoInfo
from core.video.transforms import frame_to_crop

if TYPE_CHECKING:
    import torch

DECODERS = ("auto", "cpu", "nvdec")
"""Values of :attr:`SamplingConfig.decoder`."""


@dataclass(frozen=True)
class SamplingConfig:
    """How snippets are sampled from an untrimmed video (MMAction2's names and meanings);
    the ``sampling`` section of the extract config."""

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
    """Side of the square centre crop (``CenterCrop``); at most ``short_side``. 256 as in
    MMAction2's ActivityNet TSN feature config (``tsn_extract_video_feat_config.py``), which
    the production TSN config uses; Kinetics validation configs use 224."""
    batch_size: int = 32
    """Snippets per yielded batch; bounds memory together with ``crop_size`` and ``clip_len``."""
    decode_threads: int = 1
    """FFmpeg decoder threads per video: 1, the CPU that one extract actor reserves, so that
    parallel actors do not oversubscribe the node; 0 = one per core (FFmpeg's choice)."""
    decoder: Literal["auto", "cpu", "nvdec"] = "cpu"
    """Where videos are decoded (:mod:`core.video.backend`): ``"cpu"`` (PyAV, the default),
    ``"nvdec"`` (the GPU's hardware decoder through PyNvVideoCodec; an actor that cannot use
    it fails at start) or ``"auto"`` (NVDEC where the actor has a CUDA GPU, PyNvVideoCodec and
    the driver's ``libnvcuvid``, else the CPU, saying why once). With NVDEC, a video whose
    stream it cannot decode (codec, bit depth, chroma, size) is decoded on the CPU."""

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        for field in dataclasses.fields(self):
            if field.name == "decoder":
                continue
            value = getattr(self, field.name)
            minimum = 0 if field.name == "decode_threads" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{field.name} must be an int >= {minimum}, got {value!r}")
        if self.crop_size > self.short_side:
            raise ValueError(f"crop_size {self.crop_size} > short_side {self.short_side}")

    def frame_offsets(self) -> np.ndarray:
        """Offsets of a snippet's frames from its centre frame, as ``UntrimmedSampleFrames``:
        ``[-(T // 2) * fi, ..., (T - T // 2 - 1) * fi]``; shape ``(T,)``."""
        start = -(self.clip_len // 2) * self.frame_interval
        return start + self.frame_interval * np.arange(self.clip_len, dtype=np.int64)

    def num_snippets(self, num_frames: int) -> int:
        """Snippets that a video of ``num_frames`` frames yields (0 frames: 0)."""
        return len(snippet_frames(self, num_frames)[0])


def snippet_frames(cfg: SamplingConfig, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Which frames make which snippet of a video of ``num_frames`` frames: the one index
    computation of both decoders (:class:`SnippetAssembler` streams it, the NVDEC decoder asks
    for these frames by index).

    Returns:
        ``center_N`` (int64 centre frame of each snippet, ``clip_interval // 2 + k *
        clip_interval < num_frames``, or the middle frame of a video too short for one) and
        ``frames_NT`` (int64 frame index of each slot, ``center + frame_offsets()`` clipped to
        ``[0, num_frames - 1]``); both empty for 0 frames.
    """
    if num_frames <= 0:
        return np.zeros(0, np.int64), np.zeros((0, cfg.clip_len), np.int64)
    center_N = np.arange(cfg.clip_interval // 2, num_frames, cfg.clip_interval, dtype=np.int64)
    if len(center_N) == 0:  # too short for MMAction2's first centre: one on the middle frame
        center_N = np.array([(num_frames - 1) // 2], dtype=np.int64)
    frames_NT = np.clip(center_N[:, None] + cfg.frame_offsets()[None, :], 0, num_frames - 1)
    return center_N, frames_NT


@dataclass
class SnippetBatch:
    """Up to ``batch_size`` consecutive snippets of one video, in order."""

    clips_NTHWC: np.ndarray | torch.Tensor
    """uint8 RGB clips, shape ``(N, T, H, W, 3)``, not normalised: a numpy array from the CPU
    decoder, a CUDA tensor from NVDEC (:mod:`core.video.nvdec`)."""
    snippet_index_N: np.ndarray
    """int64 position of each snippet in the video's snippet sequence (0, 1, ...)."""
    center_frame_N: np.ndarray
    """int64 decoded-frame index of each snippet's centre frame."""
    center_time_N: np.ndarray
    """float64 presentation time (seconds from the stream start) of each centre frame; correct
    for variable frame rate too."""
    info: VideoInfo
    """The container's claims (see :func:`core.video.probe`)."""
    num_frames: int
    """Frames decoded so far; on the last batch, the video's true frame count."""
    duration: float
    """Seconds decoded so far (last frame's time plus one frame); true duration on the last."""
    is_last: bool
    """Whether this is the video's last batch (then ``num_frames``/``duration`` are final)."""
    num_decode_errors: int = 0
    """On the last batch: packets that failed to decode and were skipped (a damaged stream)."""
    truncated: bool = False
    """On the last batch: whether demuxing stopped before the end of the file."""


@dataclass
class Snippet:
    """One snippet being filled: its crops arrive one decoded frame at a time."""

    index: int
    center_frame: int
    frames: list[np.ndarray | None]  # T crops, (H, W, 3) uint8 each
    center_time: float = float("nan")


class SnippetAssembler:
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
        self.open: dict[int, Snippet] = {}  # snippet index -> snippet being filled
        self.head: list[tuple[np.ndarray, float]] = []  # crops of frames before the 1st centre
        self.num_frames = 0
        self.emitted = 0
        self.last_frame: av.VideoFrame | None = None  # uncropped, for end padding
        self.last_time = 0.0
        self.last_step = 0.0
        self.frame_step = 1.0 / fps if fps > 0 else 0.0
        self.start_time: float | None = None

    def add(self, index: int, frame: av.VideoFrame) -> list[Snippet]:
        """Takes decoded frame ``index``; returns the snippets it completes, in order."""
        self.num_frames = index + 1
        time = self._time(index, frame)
        self.last_step = _frame_duration(frame) or (time - self.last_time if index else 0.0)
        self.last_frame, self.last_time = frame, time
        slots = self._slots(index)
        keep_for_head = index < self.first_center
        if not slots and not keep_for_head:
            return []
        crop = frame_to_crop(frame, self.cfg.short_side, self.cfg.crop_size)
        if keep_for_head:
            self.head.append((crop, time))
        for k, j in slots:
            snippet = self.open.setdefault(
                k, Snippet(k, self._center(k), [None] * self.cfg.clip_len)
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

    def finish(self) -> list[Snippet]:
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
                    last_crop = frame_to_crop(
                        self.last_frame, self.cfg.short_side, self.cfg.crop_size
                    )
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

    def batch(self, snippets: list[Snippet], info: VideoInfo, is_last: bool) -> SnippetBatch:
        """Stacks finished snippets into a :class:`SnippetBatch` with the counts so far."""
        cfg = self.cfg
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
            num_frames=self.num_frames,
            duration=self.duration(),
            is_last=is_last,
        )

    def _short_video_snippet(self) -> Snippet:
        center_N, frames_NT = snippet_frames(self.cfg, self.num_frames)
        center = int(center_N[0])
        frames = [self.head[i][0] for i in frames_NT[0]]
        return Snippet(0, center, frames, self.head[center][1])

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
