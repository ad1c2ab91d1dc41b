"""A synthetic annotated video corpus: coloured shapes doing known actions at known times.

Each action class is a (motion, colour, shape) triple, e.g. ``bouncing_red_circle``, taken
from a fixed table (:data:`CLASS_TABLE`): class ``k`` is the same in every corpus, and any two
of the first :data:`MAX_CLASSES` classes differ in at least two of the three attributes. A
video holds 0-3 action instances, each lasting 10-60 % of the video and sometimes overlapping
another, drawn over a scrolling low-frequency texture under a drifting two-colour gradient, so
no single pixel or frame-wide colour gives the answer away.

Work is split in two so that results never depend on the number of workers:

* :func:`plan_corpus` draws every random choice (durations, fps, sizes, subsets, instances,
  where and how fast each shape moves) from a per-video generator seeded by ``(seed, index)``
  and returns plain, picklable :class:`VideoSpec` objects. Nothing is rendered.
* :func:`render_frames` and :func:`write_video` turn one spec into frames and an H.264 file;
  :func:`make_corpus` runs them in a spawn-safe process pool, one video per task, and writes
  ``videos/<video_id>.mp4``, ``annotations.json`` (ActivityNet v1.3) and ``manifest.csv``.

The annotation ``duration`` of a video is its exact encoded frame count divided by its fps, and
a segment ``[start, end]`` covers frames ``start * fps`` up to (not including) ``end * fps``.

Shape legend: ``H``, ``W`` frame height and width in pixels; ``3`` RGB channels.
"""

from __future__ import annotations

import colorsys
import contextlib
import csv
import io
import logging
import math
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np
from tqdm import tqdm

from core import storage

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# The class table

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond")
MOTIONS = ("bouncing", "orbiting", "zigzagging", "pulsing", "sliding")
# Fully saturated colours with hues spread around the wheel (RGB).
COLORS = (
    ("red", (255, 0, 0)),
    ("orange", (255, 128, 0)),
    ("yellow", (255, 230, 0)),
    ("green", (0, 220, 0)),
    ("cyan", (0, 230, 230)),
    ("blue", (30, 80, 255)),
    ("purple", (160, 0, 255)),
    ("pink", (255, 0, 160)),
)
# Class k takes shape k % 6, colour k % 8, motion k % 5. Two classes share two attributes only
# when their indices differ by a common multiple of two of (6, 8, 5): 24, 30 or 40. Up to 24
# classes, every pair therefore differs in at least two of shape, colour and motion.
MAX_CLASSES = 24


@dataclass(frozen=True)
class ActionClass:
    """One action class: what moves, in which colour, and how."""

    label_id: int
    name: str  # "<motion>_<colour>_<shape>", e.g. "bouncing_red_circle"
    motion: str
    color: str
    rgb: tuple[int, int, int]
    shape: str


def _build_class_table() -> tuple[ActionClass, ...]:
    table = []
    for k in range(MAX_CLASSES):
        shape = SHAPES[k % len(SHAPES)]
        color, rgb = COLORS[k % len(COLORS)]
        motion = MOTIONS[k % len(MOTIONS)]
        table.append(ActionClass(k, f"{motion}_{color}_{shape}", motion, color, rgb, shape))
    return tuple(table)


CLASS_TABLE: tuple[ActionClass, ...] = _build_class_table()


def class_names(num_classes: int) -> list[str]:
    """The names of the first ``num_classes`` classes; index = ``label_id``."""
    _check_num_classes(num_classes)
    return [c.name for c in CLASS_TABLE[:num_classes]]


# --------------------------------------------------------------------------------------------
# Planning: every random choice, nothing rendered

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


class CorpusArgumentError(ValueError):
    """An argument of :func:`plan_corpus` / :func:`make_corpus` is out of range."""


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


def _check_num_classes(num_classes: int) -> None:
    if not 1 <= num_classes <= MAX_CLASSES:
        raise CorpusArgumentError(
            f"num_classes must be between 1 and {MAX_CLASSES} (the class table's size), "
            f"got {num_classes}"
        )


def _validate(
    num_videos: int,
    num_classes: int,
    seed: int,
    val_fraction: float,
    min_duration: float,
    max_duration: float,
    resolutions: Sequence[tuple[int, int]],
    fps_choices: Sequence[float],
) -> None:
    if num_videos < 1:
        raise CorpusArgumentError(f"num_videos must be at least 1, got {num_videos}")
    _check_num_classes(num_classes)
    if seed < 0:
        raise CorpusArgumentError(f"seed must be a non-negative integer, got {seed}")
    if not 0.0 <= val_fraction < 1.0:
        raise CorpusArgumentError(f"val_fraction must be in [0, 1), got {val_fraction}")
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


def video_id(index: int) -> str:
    """``vid_000042``: sorts in index order and is safe as a file name."""
    return f"vid_{index:06d}"


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
            placed.append(
                ActionInstance(
                    label_id=label_id,
                    label=CLASS_TABLE[label_id].name,
                    start_frame=start,
                    end_frame=start + length,
                    anchor_x=float(rng.uniform(0.3, 0.7)),
                    anchor_y=float(rng.uniform(0.3, 0.7)),
                    size=float(rng.uniform(0.09, 0.14)),
                    speed=float(rng.uniform(0.4, 1.2)),
                    phase=float(rng.uniform(0.0, 2.0 * math.pi)),
                    direction=1 if rng.random() < 0.5 else -1,
                )
            )
            break
    return tuple(sorted(placed, key=lambda p: (p.start_frame, p.end_frame, p.label_id)))


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
    _validate(
        num_videos,
        num_classes,
        seed,
        val_fraction,
        min_duration,
        max_duration,
        resolutions,
        fps_choices,
    )
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


# --------------------------------------------------------------------------------------------
# Rendering

_OUTLINE_RGB = (20, 20, 20)
MIN_RADIUS = 6.0  # pixels: smaller shapes lose their form to the outline


class _Background:
    """A tileable low-frequency texture scrolling under a two-colour gradient whose hues and
    direction drift over time."""

    def __init__(self, spec: VideoSpec) -> None:
        rng = np.random.default_rng(spec.background_seed)
        h, w = spec.height, spec.width
        tex_HW = _periodic_noise(rng, h, w, blobs=4.0) + 0.35 * _periodic_noise(rng, h, w, 14.0)
        tex_HW = (tex_HW - tex_HW.min()) / max(float(np.ptp(tex_HW)), 1e-6)
        self.lum_2H2W = np.tile(0.45 + 0.9 * tex_HW, (2, 2)).astype(np.float32)
        self.velocity = rng.uniform(-1.5, 1.5, size=2)  # pixels per frame, (x, y)
        self.hues = rng.uniform(0.0, 1.0, size=2)  # gradient end colours, fraction of the wheel
        self.hue_rate = float(rng.uniform(-0.03, 0.03))  # wheel turns per second
        self.angle = float(rng.uniform(0.0, 2.0 * math.pi))
        self.angle_rate = float(rng.uniform(-0.5, 0.5))  # radians per second
        self.y_H = np.linspace(-0.7, 0.7, h, dtype=np.float32)
        self.x_W = np.linspace(-0.7, 0.7, w, dtype=np.float32)
        self.fps = spec.fps

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i``, RGB uint8 (H x W x 3)."""
        h, w = len(self.y_H), len(self.x_W)
        t = i / self.fps
        ox = int(round(self.velocity[0] * i)) % w
        oy = int(round(self.velocity[1] * i)) % h
        lum_HW = self.lum_2H2W[oy : oy + h, ox : ox + w]
        rgb_a, rgb_b = (
            np.array(colorsys.hsv_to_rgb((hue + self.hue_rate * t) % 1.0, 0.45, 0.55), np.float32)
            * 255.0
            for hue in self.hues
        )
        # The gradient mixes a into b by 0.5 + 0.5 * (x cos + y sin): linear in x and y, so it
        # is a row term plus a column term. Planes (3 x H x W) keep numpy's inner loops long.
        angle = self.angle + self.angle_rate * t
        diff_3 = rgb_b - rgb_a
        mix_W = 0.5 + 0.5 * math.cos(angle) * self.x_W
        mix_H = 0.5 * math.sin(angle) * self.y_H
        col_3W = rgb_a[:, None] + diff_3[:, None] * mix_W[None, :]
        row_3H = diff_3[:, None] * mix_H[None, :]
        rgb_3HW = row_3H[:, :, None] + col_3W[:, None, :]
        rgb_3HW *= lum_HW
        # colours are at most 0.55 * 255 and lum at most 1.35: always inside [0, 255]
        return cv2.merge(list(rgb_3HW.astype(np.uint8)))


def _periodic_noise(rng: np.random.Generator, h: int, w: int, blobs: float) -> np.ndarray:
    """White noise low-passed in the Fourier domain: smooth, about ``blobs`` features across
    the shorter side, and periodic, so it tiles without seams (H x W float)."""
    noise_HW = rng.standard_normal((h, w))
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    cutoff = blobs / min(h, w)  # cycles per pixel
    spectrum = np.fft.rfft2(noise_HW) * np.exp(-(fx**2 + fy**2) / cutoff**2)
    return np.fft.irfft2(spectrum, s=(h, w))


def _triangle(u: float) -> float:
    """Triangle wave of period 1 in [-1, 1]."""
    return 4.0 * abs(u - math.floor(u + 0.5)) - 1.0


def _pose(
    motion: str, inst: ActionInstance, t: float, progress: float, w: int, h: int
) -> tuple[float, float, float]:
    """Centre (x, y) in pixels and a size multiplier, ``t`` seconds into the instance
    (``progress`` in [0, 1] across it)."""
    m = min(w, h)
    cx, cy = inst.anchor_x * w, inst.anchor_y * h
    turn = 2.0 * math.pi * inst.speed * t + inst.phase
    d = inst.direction
    if motion == "bouncing":  # hops off a floor near the bottom, drifting sideways
        return (
            cx + d * 0.15 * w * (progress - 0.5),
            0.8 * h - 0.5 * h * abs(math.sin(turn / 2)),
            1.0,
        )
    if motion == "orbiting":  # circles its anchor
        return cx + d * 0.25 * m * math.cos(turn), cy + 0.25 * m * math.sin(turn), 1.0
    if motion == "zigzagging":  # sweeps sideways with a fast up-down zig-zag
        sweep = _triangle(0.5 * inst.speed * t + inst.phase / (2.0 * math.pi))
        return cx + d * 0.3 * w * sweep, cy + 0.12 * h * _triangle(3.0 * inst.speed * t), 1.0
    if motion == "pulsing":  # stays put, grows and shrinks
        return cx, cy, 1.0 + 0.35 * math.sin(1.5 * turn)
    if motion == "sliding":  # crosses the frame once, steadily
        x = 0.12 + 0.76 * (progress if d > 0 else 1.0 - progress)
        return x * w, cy, 1.0
    raise ValueError(f"unknown motion {motion!r}")


def _shape_points(shape: str, x: float, y: float, r: float) -> np.ndarray:
    """Polygon vertices (N x 2 int32) of a polygonal shape of radius ``r`` at (x, y)."""
    if shape == "square":
        unit = [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]
    elif shape == "triangle":
        unit = [(0.0, -1.0), (0.95, 0.75), (-0.95, 0.75)]
    elif shape == "diamond":
        unit = [(0.0, -1.1), (0.8, 0.0), (0.0, 1.1), (-0.8, 0.0)]
    elif shape == "cross":
        a, b = 0.35, 1.0
        unit = [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a)]
        unit += [(a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a)]
    else:
        raise ValueError(f"unknown polygon shape {shape!r}")
    return np.round(np.array(unit) * r + (x, y)).astype(np.int32)


def _draw_shape(frame_HW3: np.ndarray, cls: ActionClass, x: float, y: float, r: float) -> None:
    outline = max(1, round(r / 8))
    centre = (round(x), round(y))
    if cls.shape == "circle":
        cv2.circle(frame_HW3, centre, round(r), cls.rgb, -1, cv2.LINE_AA)
        cv2.circle(frame_HW3, centre, round(r), _OUTLINE_RGB, outline, cv2.LINE_AA)
    elif cls.shape == "ring":
        band = max(2, round(r / 3))
        cv2.circle(frame_HW3, centre, round(r), _OUTLINE_RGB, band + 2 * outline, cv2.LINE_AA)
        cv2.circle(frame_HW3, centre, round(r), cls.rgb, band, cv2.LINE_AA)
    else:
        points = _shape_points(cls.shape, x, y, r)
        cv2.fillPoly(frame_HW3, [points], cls.rgb, cv2.LINE_AA)
        cv2.polylines(frame_HW3, [points], True, _OUTLINE_RGB, outline, cv2.LINE_AA)


def _draw_instance(frame_HW3: np.ndarray, inst: ActionInstance, i: int, fps: float) -> None:
    h, w = frame_HW3.shape[:2]
    cls = CLASS_TABLE[inst.label_id]
    t = (i - inst.start_frame) / fps
    progress = (i - inst.start_frame) / max(1, inst.end_frame - inst.start_frame - 1)
    x, y, scale = _pose(cls.motion, inst, t, progress, w, h)
    r = max(MIN_RADIUS, inst.size * min(w, h) * scale)
    reach = 1.1 * r + 1  # the farthest vertex of any shape, plus its outline
    x = min(max(x, reach), w - reach - 1)  # keep the whole shape in view
    y = min(max(y, reach), h - reach - 1)
    _draw_shape(frame_HW3, cls, x, y, r)


def render_frames(spec: VideoSpec) -> Iterator[np.ndarray]:
    """Yields the video's frames, RGB uint8 (H x W x 3), in order."""
    background = _Background(spec)
    for i in range(spec.num_frames):
        frame_HW3 = background.frame(i)
        for inst in spec.instances:
            if inst.start_frame <= i < inst.end_frame:
                _draw_instance(frame_HW3, inst, i, spec.fps)
        yield frame_HW3


# --------------------------------------------------------------------------------------------
# Encoding

X264_PRESET = "veryfast"
X264_CRF = 23


def _encoder(name: str) -> str:
    """``pyav`` when the av wheel has libx264, else ``ffmpeg`` (a subprocess pipe)."""
    if name not in ("auto", "pyav", "ffmpeg"):
        raise ValueError(f"encoder must be auto, pyav or ffmpeg, got {name!r}")
    if name != "auto":
        return name
    if "libx264" in av.codecs_available:
        return "pyav"
    if shutil.which("ffmpeg"):
        return "ffmpeg"
    raise RuntimeError("no H.264 encoder: the av wheel lacks libx264 and ffmpeg is not on PATH")


def _write_pyav(frames: Iterator[np.ndarray], path: str, spec: VideoSpec, threads: int) -> None:
    with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(str(spec.fps)))
        codec = stream.codec_context
        codec.width, codec.height, codec.pix_fmt = spec.width, spec.height, "yuv420p"
        codec.options = {"preset": X264_PRESET, "crf": str(X264_CRF), "threads": str(threads)}
        for i, frame_HW3 in enumerate(frames):
            # OpenCV's I420 conversion is BT.601 limited range, as swscale's, and ten times faster
            yuv_H2W = cv2.cvtColor(frame_HW3, cv2.COLOR_RGB2YUV_I420)  # H * 3/2 x W
            frame = av.VideoFrame.from_ndarray(yuv_H2W, format="yuv420p")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _write_ffmpeg(frames: Iterator[np.ndarray], path: str, spec: VideoSpec, threads: int) -> None:
    command = [
        shutil.which("ffmpeg") or "ffmpeg",
        "-nostdin", "-y", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{spec.width}x{spec.height}",
        "-framerate", str(Fraction(str(spec.fps))), "-i", "-",
        "-c:v", "libx264", "-preset", X264_PRESET, "-crf", str(X264_CRF),
        "-threads", str(threads), "-pix_fmt", "yuv420p", "-movflags", "+faststart",
        "-f", "mp4", path,
    ]  # fmt: skip
    with subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdin is not None
        try:
            for frame_HW3 in frames:
                proc.stdin.write(frame_HW3.tobytes())
        except BrokenPipeError:
            pass  # ffmpeg exited early; its return code and stderr say why
        finally:
            proc.stdin.close()
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}) on {spec.video_id}: {stderr}")


def write_video(spec: VideoSpec, path: str, encoder: str = "auto", threads: int = 0) -> None:
    """Renders ``spec`` and encodes it as H.264 (yuv420p) MP4 at the local ``path``.

    Args:
        encoder: ``pyav`` (libx264 inside the av wheel), ``ffmpeg`` (a subprocess pipe) or
            ``auto`` (pyav when it has libx264).
        threads: x264 threads; 0 lets x264 choose.
    """
    writer = _write_pyav if _encoder(encoder) == "pyav" else _write_ffmpeg
    writer(render_frames(spec), path, spec, threads)


# --------------------------------------------------------------------------------------------
# The corpus on storage


@dataclass(frozen=True)
class CorpusSummary:
    """What :func:`make_corpus` wrote."""

    output_uri: str
    annotations_uri: str
    manifest_uri: str
    num_videos: int
    num_training: int
    num_validation: int
    num_instances: int
    total_frames: int
    total_duration: float  # seconds of video
    elapsed: float  # seconds of wall time


def annotations_json(specs: Sequence[VideoSpec], num_classes: int) -> dict:
    """ActivityNet v1.3 annotations of the planned videos, plus the ordered class list under
    ``classes`` (index = ``label_id``)."""
    names = class_names(num_classes)
    taxonomy = [{"nodeId": 0, "nodeName": "Root", "parentId": None, "parentName": None}]
    taxonomy += [
        {"nodeId": k + 1, "nodeName": name, "parentId": 0, "parentName": "Root"}
        for k, name in enumerate(names)
    ]
    database = {
        spec.video_id: {
            "subset": spec.subset,
            "duration": round(spec.duration, 6),
            "resolution": f"{spec.width}x{spec.height}",
            "fps": spec.fps,
            "url": "",
            "annotations": [
                {"segment": [round(t, 6) for t in inst.segment(spec.fps)], "label": inst.label}
                for inst in spec.instances
            ],
        }
        for spec in specs
    }
    return {"version": "synthetic-1", "classes": names, "taxonomy": taxonomy, "database": database}


MANIFEST_COLUMNS = ("video_id", "uri", "subset", "duration", "fps", "width", "height", "num_frames")


def manifest_csv(specs: Sequence[VideoSpec], output_uri: str) -> str:
    """``manifest.csv`` text: one row per video, ``uri`` the video's full URI."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for spec in specs:
        uri = _video_uri(output_uri, spec.video_id)
        writer.writerow(
            [spec.video_id, uri, spec.subset, round(spec.duration, 6), spec.fps]
            + [spec.width, spec.height, spec.num_frames]
        )
    return buffer.getvalue()


def _root(output_uri: str) -> str:
    """The output URI as it appears in the manifest: absolute for local paths."""
    if storage.is_local(output_uri):
        return os.path.abspath(storage.strip_protocol(output_uri))
    return output_uri.rstrip("/")


def _video_uri(root: str, vid: str) -> str:
    return storage.join(root, "videos", f"{vid}.mp4")


def _render_task(task: tuple[VideoSpec, str, str, int]) -> tuple[str, str]:
    """One pool task: renders one video into ``tmp_dir``; returns (video_id, local path)."""
    spec, tmp_dir, encoder, threads = task
    path = os.path.join(tmp_dir, f"{spec.video_id}.mp4")
    write_video(spec, path, encoder=encoder, threads=threads)
    return spec.video_id, path


def _render_all(
    specs: Sequence[VideoSpec], tmp_dir: str, workers: int, encoder: str
) -> Iterator[tuple[str, str]]:
    """Renders every video, in a spawn process pool when ``workers > 1``; yields (video_id,
    local path) as each finishes, in any order."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    tasks = [(spec, tmp_dir, encoder, threads) for spec in specs]
    if workers == 1:
        yield from map(_render_task, tasks)
        return
    # spawn: safe under Ray, threads and every OS; workers import only this module's deps.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_render_task, tasks, chunksize=1)


def make_corpus(
    output_uri: str,
    num_videos: int,
    num_classes: int,
    seed: int,
    *,
    val_fraction: float = 0.2,
    min_duration: float = DEFAULT_MIN_DURATION,
    max_duration: float = DEFAULT_MAX_DURATION,
    resolutions: Sequence[tuple[int, int]] = DEFAULT_RESOLUTIONS,
    fps_choices: Sequence[float] = DEFAULT_FPS,
    workers: int | None = None,
    encoder: str = "auto",
) -> CorpusSummary:
    """Plans, renders and writes a corpus under ``output_uri`` (any storage URI).

    Writes ``videos/<video_id>.mp4`` first, then ``annotations.json`` and ``manifest.csv``, so
    a reader that finds the annotations finds every video. Each video is encoded to a local
    temporary file by a worker and copied to storage by this process.

    Args:
        workers: rendering processes; ``None`` = CPU count. Results do not depend on it.
        encoder: see :func:`write_video`.

    Raises:
        CorpusArgumentError: an argument is out of range.
    """
    started = time.perf_counter()
    specs = plan_corpus(
        num_videos,
        num_classes,
        seed,
        val_fraction=val_fraction,
        min_duration=min_duration,
        max_duration=max_duration,
        resolutions=resolutions,
        fps_choices=fps_choices,
    )
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise CorpusArgumentError(f"workers must be at least 1, got {workers}")
    workers = min(workers, len(specs))
    _encoder(encoder)  # fail before starting workers
    root = _root(output_uri)
    storage.makedirs(storage.join(root, "videos"))
    log.info("rendering %d videos into %s with %d workers", len(specs), root, workers)

    with tempfile.TemporaryDirectory(prefix="corpus-") as tmp_dir:
        rendered = _render_all(specs, tmp_dir, workers, encoder)
        with contextlib.closing(rendered):
            for vid, path in tqdm(rendered, total=len(specs), desc="videos", unit="video"):
                storage.put_file(path, _video_uri(root, vid))
                os.unlink(path)

    annotations_uri = storage.join(root, "annotations.json")
    manifest_uri = storage.join(root, "manifest.csv")
    storage.write_json(annotations_uri, annotations_json(specs, num_classes))
    storage.write_text(manifest_uri, manifest_csv(specs, root))
    num_val = sum(spec.subset == "validation" for spec in specs)
    return CorpusSummary(
        output_uri=root,
        annotations_uri=annotations_uri,
        manifest_uri=manifest_uri,
        num_videos=len(specs),
        num_training=len(specs) - num_val,
        num_validation=num_val,
        num_instances=sum(len(spec.instances) for spec in specs),
        total_frames=sum(spec.num_frames for spec in specs),
        total_duration=sum(spec.duration for spec in specs),
        elapsed=time.perf_counter() - started,
    )
