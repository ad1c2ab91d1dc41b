"""Rendering one planned video: coloured shapes over a moving background, as RGB frames.

Each action instance is drawn as its class's shape, in its class's colour, moving as its
class's motion says, over a scrolling low-frequency texture under a drifting two-colour
gradient, so that no single pixel or frame-wide colour gives the answer away.

Shape legend: ``H``, ``W`` frame height and width in pixels; ``3`` RGB channels.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Iterator

import cv2
import numpy as np

from core.corpus.classes import CLASS_TABLE, ActionClass
from core.corpus.plan import ActionInstance, VideoSpec

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
