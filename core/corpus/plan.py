"""Planning a corpus: every random choice is drawn here, nothing is rendered.

:func:`plan_corpus` draws durations, frame rates, sizes, subsets, action instances and where
and how fast each shape moves from a per-video generator seeded by ``(seed, index)``, and
returns plain, picklable :class:`VideoSpec` objects, so that results never depend on the
number of rendering workers.

A video holds 0-3 action instances, each lasting 10-60 % of the video and sometimes
overlapping another. Its ``duration`` is its exact frame count divided by its fps, and a
segment ``[start, end]`` covers frames ``start * fps`` up to (not including) ``end * fps``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np

from core.corpus.classes import CLASS_TABLE, CorpusArgumentError, check_num_classes

DEFAULT_MIN_DURATION = 5.0  # seconds
DEFAULT_MAX_DURATION = 60.0
DEFAULT_RESOLUTIONS: tuple[tuple[int, int], ...] = ((320, 240), (480, 360), (640, 360), (640, 480))
DEFAULT_FPS: tuple[float, ...] = (15.0, 24.0, 25.0, 30.0)

MIN_DURATION = 0.5  # seconds; shorter videos leave instances a frame or two
MAX_DURATION = 3600.0
MIN_SIDE = 32  # pixels
MAX_FPS = 120.0
INSTANCE_COUNT_P = (0.1, 0.4, 0.3, 0.2)  # P(0), P(1), P(2), P(3) instances in a video
INSTANCE_FRACTION = (0.1, 0.6)  # an instance lasts this fraction of its video
OVERLAP_PROBABILITY = 0.25  # an instance may overlap the ones already placed
PLACEMENT_ATTEMPTS = 20


@dataclass(frozen=True)
class ActionInstance:
    """One action in one video: its class, its frames and how its shape moves."""

    label_id: int
    label: str
    start_frame: int
    end_frame: int  # exclusive
    anchor_x: float  # centre of the motion, fraction of the frame width
    anchor_y: float  # fraction of the frame height
    size: float  # shape radius, fraction of min(width, height)
    speed: float  # motion cycles per second
    phase: float  # radians
    direction: int  # +1 or -1: which way it slides, orbits or drifts

    def segment(self, fps: float) -> tuple[float, float]:
        """``[start, end]`` in seconds."""
        return self.start_frame / fps, self.end_frame / fps


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render one video, and its ground truth."""

    index: int
    video_id: str
    subset: str  # "training" or "validation"
    width: int
    height: int
    fps: float
    num_frames: int
    background_seed: int
    instances: tuple[ActionInstance, ...]

    @property
    def duration(self) -> float:
        """Seconds: exactly what the encoded file holds."""
        return self.num_frames / self.fps


class PlanOptions(TypedDict, total=False):
    """The optional keyword arguments of :func:`plan_corpus`, for functions that pass them on."""

    val_fraction: float  # share of validation videos, in [0, 1)
    min_duration: float  # seconds
    max_duration: float  # seconds
    resolutions: Sequence[tuple[int, int]]  # (width, height) choices, even numbers
    fps_choices: Sequence[float]


def video_id(index: int) -> str:
    """``vid_000042``: sorts in index order and is safe as a file name."""
    return f"vid_{index:06d}"


# --------------------------------------------------------------------------------------------
# Argument checks


def _check_counts(num_videos: int, num_classes: int, seed: int, val_fraction: float) -> None:
    if num_videos < 1:
        raise CorpusArgumentError(f"num_videos must be at least 1, got {num_videos}")
    check_num_classes(num_classes)
    if seed < 0:
        raise CorpusArgumentError(f"seed must be a non-negative integer, got {seed}")
    if not 0.0 <= val_fraction < 1.0:
        raise CorpusArgumentError(f"val_fraction must be in [0, 1), got {val_fraction}")


def _check_durations(min_duration: float, max_duration: float) -> None:
    if not min_duration >= MIN_DURATION:  # written so that NaN fails too
        raise CorpusArgumentError(
            f"min_duration must be at least {MIN_DURATION} s, got {min_duration}"
        )
    if not min_duration <= max_duration:
        raise CorpusArgumentError(
            f"min_duration ({min_duration} s) must not exceed max_duration ({max_duration} s)"
        )
    if not max_duration <= MAX_DURATION:
        raise CorpusArgumentError(
            f"max_duration must be at most {MAX_DURATION} s, got {max_duration}"
        )


def _check_formats(resolutions: Sequence[tuple[int, int]], fps_choices: Sequence[float]) -> None:
    if not resolutions:
        raise CorpusArgumentError("resolutions must name at least one WxH size")
    for width, height in resolutions:
        if width < MIN_SIDE or height < MIN_SIDE or width % 2 or height % 2:
            raise CorpusArgumentError(
                f"resolution {width}x{height}: width and height must be even (yuv420p) and "
                f"at least {MIN_SIDE}"
            )
    if not fps_choices:
        raise CorpusArgumentError("fps_choices must hold at least one frame rate")
    for fps in fps_choices:
        if not 1.0 <= fps <= MAX_FPS:
            raise CorpusArgumentError(f"fps must be between 1 and {MAX_FPS}, got {fps}")


# --------------------------------------------------------------------------------------------
# Drawing the plan


def _plan_instances(
    rng: np.random.Generator, num_frames: int, num_classes: int
) -> tuple[ActionInstance, ...]:
    count = int(rng.choice(len(INSTANCE_COUNT_P), p=INSTANCE_COUNT_P))
    placed: list[ActionInstance] = []
    for _ in range(count):
        allow_overlap = rng.random() < OVERLAP_PROBABILITY
        for _attempt in range(PLACEMENT_ATTEMPTS):
            length = max(1, int(round(rng.uniform(*INSTANCE_FRACTION) * num_frames)))
            start = int(rng.integers(0, num_frames - length + 1))
            overlapping = [
                p for p in placed if start < p.end_frame and p.start_frame < start + length
            ]
            if overlapping and not allow_overlap:
                continue
            # Two actions at once are of different classes, so each stays countable.
            taken = {p.label_id for p in overlapping}
            free = [k for k in range(num_classes) if k not in taken]
            if not free:
                continue
            label_id = free[int(rng.integers(len(free)))]
            placed.append(_draw_instance(rng, label_id, start, start + length))
            break
    return tuple(sorted(placed, key=lambda p: (p.start_frame, p.end_frame, p.label_id)))


def _draw_instance(
    rng: np.random.Generator, label_id: int, start_frame: int, end_frame: int
) -> ActionInstance:
    """Where and how the shape of an instance already placed in time moves."""
    return ActionInstance(
        label_id=label_id,
        label=CLASS_TABLE[label_id].name,
        start_frame=start_frame,
        end_frame=end_frame,
        anchor_x=float(rng.uniform(0.3, 0.7)),
        anchor_y=float(rng.uniform(0.3, 0.7)),
        size=float(rng.uniform(0.09, 0.14)),
        speed=float(rng.uniform(0.4, 1.2)),
        phase=float(rng.uniform(0.0, 2.0 * math.pi)),
        direction=1 if rng.random() < 0.5 else -1,
    )


def plan_corpus(
    num_videos: int,
    num_classes: int,
    seed: int,
    *,
    val_fraction: float = 0.2,
    min_duration: float = DEFAULT_MIN_DURATION,
    max_duration: float = DEFAULT_MAX_DURATION,
    resolutions: Sequence[tuple[int, int]] = DEFAULT_RESOLUTIONS,
    fps_choices: Sequence[float] = DEFAULT_FPS,
) -> list[VideoSpec]:
    """Plans a corpus without rendering it.

    Video ``i`` depends only on ``(seed, i)`` and the arguments, except its subset: the
    ``round(val_fraction * num_videos)`` videos with the lowest per-video split draw go to
    ``validation`` (at least one video always stays in ``training``).

    Raises:
        CorpusArgumentError: an argument is out of range.
    """
    _check_counts(num_videos, num_classes, seed, val_fraction)
    _check_durations(min_duration, max_duration)
    _check_formats(resolutions, fps_choices)
    drafts = []
    for index in range(num_videos):
        rng = np.random.default_rng([seed, index])
        split_draw = float(rng.random())
        duration = float(rng.uniform(min_duration, max_duration))
        fps = float(fps_choices[int(rng.integers(len(fps_choices)))])
        width, height = resolutions[int(rng.integers(len(resolutions)))]
        num_frames = max(2, int(round(duration * fps)))
        background_seed = int(rng.integers(2**63))
        instances = _plan_instances(rng, num_frames, num_classes)
        drafts.append(
            (split_draw, index, width, height, fps, num_frames, background_seed, instances)
        )

    num_val = min(int(math.floor(val_fraction * num_videos + 0.5)), num_videos - 1)
    validation = {index for _, index, *_ in sorted(drafts)[:num_val]}
    return [
        VideoSpec(
            index=index,
            video_id=video_id(index),
            subset="validation" if index in validation else "training",
            width=int(width),
            height=int(height),
            fps=fps,
            num_frames=num_frames,
            background_seed=background_seed,
            instances=instances,
        )
        for _, index, width, height, fps, num_frames, background_seed, instances in drafts
    ]
