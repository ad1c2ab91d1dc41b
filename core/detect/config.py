"""The detect job's config schema (``configs/detect/*.py``), checked by :func:`core.config.load`.

Sections, in the order a video meets them: ``sampling`` (which frames: the demo's keyframes
and the clips around them), ``detector`` (the mmdet person detector), ``action`` (the
MMAction2 spatio-temporal action model and its label map), ``render`` (which videos get an
MP4 with boxes and labels), then ``checkpoint`` and ``storage`` (:mod:`core.config`).
Defaults are those of MMAction2's ``demo/demo_spatiotemporal_det.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from core.config import CheckpointLoadSection, StorageSection


def _positive(section: object, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value!r}")


@dataclasses.dataclass
class KeyframeSampling:
    """Which frames are decoded and how they are resized (``sampling``).

    Keyframe ``c`` (0-based frame index) gets the clip of frames
    ``c + (k - (clip_len // 2 - 1)) * frame_interval`` for ``k < clip_len``, as the demo
    builds it; keyframes are ``c = window // 2 - 1 + j * predict_stepsize`` for every ``c``
    whose clip lies inside the video (``window = clip_len * frame_interval``): the demo's
    1-based ``np.arange(window // 2, num_frames + 1 - window // 2, predict_stepsize)``.
    """

    short_side: int = 256
    """Clip frames are resized to this shorter side, aspect kept (the demo's ``--short-side``)."""
    predict_stepsize: int = 8
    """Frames between keyframes (the demo's ``--predict-stepsize``)."""
    clip_len: int = 8
    """Frames per clip (the action model's ``SampleAVAFrames.clip_len``); even."""
    frame_interval: int = 8
    """Frames between a clip's frames (``SampleAVAFrames.frame_interval``)."""
    decode_threads: int = 1
    """FFmpeg decoder threads per video (0 = FFmpeg's choice)."""
    keyframes_per_block: int = 16
    """Keyframes per block the decoder hands on (bounds a decoding task's memory)."""
    num_cpus: float = 1.0
    """CPUs a decoding task reserves."""

    def __post_init__(self) -> None:
        _positive(self, "short_side", "predict_stepsize", "clip_len", "frame_interval")
        _positive(self, "keyframes_per_block")
        if self.clip_len % 2:
            raise ValueError(f"clip_len must be even (as the demo asserts), got {self.clip_len}")
        if self.decode_threads < 0:
            raise ValueError(f"decode_threads must be >= 0, got {self.decode_threads}")

    @property
    def window(self) -> int:
        return self.clip_len * self.frame_interval

    def clip_offsets(self) -> list[int]:
        """Offsets of a clip's frames from its keyframe."""
        first = -(self.clip_len // 2 - 1) * self.frame_interval
        return [first + k * self.frame_interval for k in range(self.clip_len)]


@dataclasses.dataclass
class DetectorSection:
    """The person detector: an mmdet model run on each keyframe (``detector``)."""

    model: dict[str, Any]
    """An mmdet model dict (``_scope_='mmdet'``), e.g. the demo's Faster R-CNN R50-FPN."""
    checkpoint: str | None = None
    """URI of its weights (local, s3://, https://); None = random weights (seeded)."""
    test_scale: tuple[int, int] = (1333, 800)
    """``mmdet.Resize(scale=..., keep_ratio=True)`` of the detector's test pipeline."""
    score_thr: float = 0.9
    """Boxes scoring above this are persons (the demo's ``--det-score-thr``)."""
    category_id: int = 0
    """The detector's class index of a person (COCO: 0; the demo's ``--det-cat-id``)."""
    short_side: int | None = None
    """Resize keyframes to this shorter side before they travel to the detector; None = the
    decoded frame as it is (as the demo detects). The detector resizes to ``test_scale``
    anyway; a smaller value saves object-store traffic on large videos."""
    max_persons: int = 100
    """At most this many persons per keyframe (the highest scores)."""
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Autocast dtype on CUDA (boxes and scores leave as float32); the CPU always runs
    float32. mmdet casts its RoIs to the features' dtype: float16 keeps a box corner to
    within 1 px of 2048, bfloat16 only to within 8."""
    batch_size: int = 8
    """Keyframes per batched forward pass (of one image size)."""
    num_actors: int = 1
    num_gpus: float = 0.0
    """GPU share per detector actor; 0 on CPU."""
    num_cpus: float = 1.0
    """CPUs per detector actor (its pre-processing; on CPU its inference too)."""

    def __post_init__(self) -> None:
        _positive(self, "max_persons", "batch_size", "num_actors")
        if not 0.0 <= self.score_thr < 1.0:
            raise ValueError(f"score_thr must be in [0, 1), got {self.score_thr}")


@dataclasses.dataclass
class ActionSection:
    """The spatio-temporal action model: MMAction2's ``FastRCNN`` (SlowOnly backbone and
    ``AVARoIHead``) over each keyframe's clip and person boxes (``action``)."""

    model: dict[str, Any]
    """An MMAction2 detection model dict, e.g. ``configs/detection/slowonly/...ava21-rgb.py``'s."""
    label_map: str
    """URI of the label map: ``N: name`` lines (MMAction2's ``tools/data/ava/label_map.txt``)
    or AVA's ``.pbtxt``; only its classes are reported."""
    checkpoint: str | None = None
    """URI of its weights; None = random weights (seeded)."""
    score_thr: float = 0.5
    """An action is reported when its score exceeds this (the demo's ``--action-score-thr``)."""
    channel_order: Literal["rgb", "bgr"] = "rgb"
    """Channel order of the clips the model sees. MMAction2 trains its AVA models on RGB
    (``RawFrameDecode``); the demo feeds OpenCV's BGR frames: ``bgr`` reproduces it."""
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Autocast dtype on CUDA (scores leave as float32); the CPU always runs float32."""
    batch_size: int = 4
    """Clips per batched forward pass (of one clip size)."""
    num_actors: int = 1
    num_gpus: float = 0.0
    """GPU share per action actor; 0 on CPU."""
    num_cpus: float = 1.0
    """CPUs per action actor."""

    def __post_init__(self) -> None:
        _positive(self, "batch_size", "num_actors")
        if not 0.0 <= self.score_thr < 1.0:
            raise ValueError(f"score_thr must be in [0, 1), got {self.score_thr}")


@dataclasses.dataclass
class RenderSection:
    """Which videos get ``renders/<video_id>.mp4`` with boxes and labels, and how (``render``)."""

    video_ids: list[str] = dataclasses.field(default_factory=list)
    """These videos are rendered (ids as in the detections)."""
    max_videos: int = 0
    """Besides ``video_ids``, the first this many videos of the input (in input order)."""
    output_stepsize: int = 4
    """One output frame every this many frames (the demo's ``--output-stepsize``); it must
    divide ``sampling.predict_stepsize``."""
    output_fps: int = 6
    """Frame rate of the rendered video (the demo's ``--output-fps``)."""
    max_labels: int = 5
    """Labels drawn per person, highest scores first (the demo's ``max_num``)."""

    def __post_init__(self) -> None:
        _positive(self, "output_stepsize", "output_fps", "max_labels")
        if self.max_videos < 0:
            raise ValueError(f"max_videos must be >= 0, got {self.max_videos}")


@dataclasses.dataclass
class DetectConfig:
    """The detect job's config schema."""

    detector: DetectorSection
    action: ActionSection
    sampling: KeyframeSampling = dataclasses.field(default_factory=KeyframeSampling)
    render: RenderSection = dataclasses.field(default_factory=RenderSection)
    write_batch_size: int = 16
    """Videos per committed Parquet file."""
    seed: int = 0
    """Seeds the random weights of a model without a checkpoint."""
    checkpoint: CheckpointLoadSection = dataclasses.field(default_factory=CheckpointLoadSection)
    storage: StorageSection = dataclasses.field(default_factory=StorageSection)

    def __post_init__(self) -> None:
        _positive(self, "write_batch_size")
        if self.sampling.predict_stepsize % self.render.output_stepsize:
            raise ValueError(
                f"render.output_stepsize={self.render.output_stepsize} must divide "
                f"sampling.predict_stepsize={self.sampling.predict_stepsize} (as in the demo)"
            )
