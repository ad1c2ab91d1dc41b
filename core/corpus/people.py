"""A synthetic corpus with people: moving, visually distinct figures performing class-specific
motions, and AVA-format ground truth, for spatio-temporal detection (``jobs.detect``).

Each video shows 1 to ``max_people`` figures (a coloured torso with a pale head, each person
its own saturated colour) over a dim textured background. A person performs one action for
the whole video, each with its own motion, so a clip model can tell them apart and a single
frame cannot always:

===============  ======  ===================================================
action (AVA id)  AVA     motion
===============  ======  ===================================================
walk             14      moves sideways at a steady pace, legs swinging
jump/leap        7       bounces up and down
bend/bow         1       the torso shortens and grows again (bowing)
stand            12      stays in place
===============  ======  ===================================================

Ground truth (``ava_annotations.csv``, AVA's layout without a header:
``video_id,timestamp,x1,y1,x2,y2,action_id,person_id``) has one row per person at every whole
second ``1 .. floor(duration) - 1`` (AVA's 1 Hz keyframes), boxes as fractions of the frame;
``ava_label_map.pbtxt`` names the classes; ``manifest.csv`` lists the videos.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

import numpy as np

from core import storage
from core.corpus.encode import encode_h264

ACTIONS = {14: "walk", 7: "jump/leap", 1: "bend/bow", 12: "stand"}


@dataclasses.dataclass(frozen=True)
class Person:
    action_id: int
    color: tuple[int, int, int]
    x0: float  # centre at t = 0, fraction of the width
    y0: float  # feet at t = 0, fraction of the height
    height: float  # fraction of the frame height
    speed: float  # fractions of the width per second (walk)
    phase: float

    def box(self, t: float) -> tuple[float, float, float, float]:
        """(x1, y1, x2, y2) as fractions of the frame at ``t`` seconds."""
        h, w = self.height, self.height * 0.45
        x, feet = self.x0, self.y0
        if self.action_id == 14:
            x = self.x0 + self.speed * t
            x = 0.1 + abs((x - 0.1) % 1.6 - 0.8)  # bounce between 0.1 and 0.9
        elif self.action_id == 7:
            feet = self.y0 - 0.15 * abs(np.sin(np.pi * 1.5 * t + self.phase))
        elif self.action_id == 1:
            h = self.height * (0.75 + 0.25 * np.cos(2 * np.pi * 0.8 * t + self.phase))
        return (x - w / 2, feet - h, x + w / 2, feet)


def plan_people(rng: np.random.Generator, max_people: int) -> list[Person]:
    people = []
    hues = rng.permutation(6)[:max_people]
    palette = [
        (230, 40, 40),
        (40, 200, 60),
        (50, 90, 240),
        (240, 200, 30),
        (200, 50, 220),
        (30, 210, 210),
    ]
    for k in range(int(rng.integers(1, max_people + 1))):
        people.append(
            Person(
                action_id=int(rng.choice(list(ACTIONS))),
                color=palette[int(hues[k])],
                x0=float(rng.uniform(0.2, 0.8)),
                y0=float(rng.uniform(0.8, 0.95)),
                height=float(rng.uniform(0.45, 0.65)),
                speed=float(rng.choice([-1, 1]) * rng.uniform(0.15, 0.3)),
                phase=float(rng.uniform(0, 2 * np.pi)),
            )
        )
    return people


def render_frame(
    people: list[Person], t: float, width: int, height: int, bg_HW3: np.ndarray
) -> np.ndarray:
    import cv2

    img = bg_HW3.copy()
    for p in people:
        x1, y1, x2, y2 = p.box(t)
        X1, Y1, X2, Y2 = int(x1 * width), int(y1 * height), int(x2 * width), int(y2 * height)
        head = max(2, (X2 - X1) // 2)
        cv2.rectangle(img, (X1, Y1 + head * 2), (X2, Y2 - (Y2 - Y1) // 3), p.color, -1)  # torso
        cv2.circle(img, ((X1 + X2) // 2, Y1 + head), head, (250, 225, 200), -1)  # head
        swing = int((X2 - X1) * 0.4 * np.sin(2 * np.pi * 2 * t)) if p.action_id == 14 else 0
        legs_top = Y2 - (Y2 - Y1) // 3
        cv2.line(
            img,
            ((X1 + X2) // 2, legs_top),
            ((X1 + X2) // 2 - (X2 - X1) // 3 + swing, Y2),
            p.color,
            3,
        )
        cv2.line(
            img,
            ((X1 + X2) // 2, legs_top),
            ((X1 + X2) // 2 + (X2 - X1) // 3 - swing, Y2),
            p.color,
            3,
        )
    return img


def make_people_corpus(
    output_uri: str,
    num_videos: int,
    seed: int,
    duration: float = 4.0,
    fps: float = 16.0,
    width: int = 160,
    height: int = 120,
    max_people: int = 2,
) -> dict[str, str]:
    """Writes ``videos/people_<i>.mp4``, ``ava_annotations.csv``, ``ava_label_map.pbtxt`` and
    ``manifest.csv`` under ``output_uri``; the same seed gives the same files. Returns their URIs."""
    from core.eval.ava import write_label_map_pbtxt

    rng = np.random.default_rng(seed)
    rows, manifest = [], ["uri,video_id"]
    for i in range(num_videos):
        vid = f"people_{i:04d}"
        people = plan_people(rng, max_people)
        bg = (rng.integers(20, 70, (height // 8, width // 8, 3))).astype(np.uint8)
        bg = np.kron(bg, np.ones((8, 8, 1), np.uint8))[:height, :width]
        n = int(round(duration * fps))
        frames = (render_frame(people, f / fps, width, height, bg) for f in range(n))
        fd, local = tempfile.mkstemp(suffix=".mp4")
        os.close(fd)
        try:
            encode_h264(frames, local, fps, width, height, threads=1)
            storage.put_file(local, storage.join(output_uri, "videos", f"{vid}.mp4"))
        finally:
            os.remove(local)
        manifest.append(f"videos/{vid}.mp4,{vid}")
        for s in range(1, int(duration)):
            for pid, p in enumerate(people):
                x1, y1, x2, y2 = np.clip(p.box(float(s)), 0.0, 1.0)
                rows.append(f"{vid},{s},{x1:.3f},{y1:.3f},{x2:.3f},{y2:.3f},{p.action_id},{pid}")
    out = {
        "annotations": storage.join(output_uri, "ava_annotations.csv"),
        "label_map": storage.join(output_uri, "ava_label_map.pbtxt"),
        "manifest": storage.join(output_uri, "manifest.csv"),
    }
    storage.write_text(out["annotations"], "\n".join(rows) + "\n")
    write_label_map_pbtxt(out["label_map"], dict(sorted(ACTIONS.items())))
    storage.write_text(out["manifest"], "\n".join(manifest) + "\n")
    return out
