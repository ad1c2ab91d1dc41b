"""Training samples for the detect job's two models, from videos and AVA ground truth.

One sample per annotated keyframe (a ``video_id, timestamp`` of the AVA CSV whose clip lies
inside the video): the keyframe as the person detector sees it and the clip around it as the
action model sees it, made by the job's own decoding steps (:mod:`core.detect.frames`: RGB,
display rotation, ``mmcv.imresize``-style short-side resize, the demo's clip offsets), so that
what the models learn on is what the job feeds them. The keyframe of timestamp ``s`` is the
frame shown at ``s`` seconds (index ``round(s * fps)``).

Persons are the distinct boxes of a keyframe's rows (AVA has one row per person and action),
each with all its action ids.

Shape legend: N persons, T clip frames, H x W keyframe, h x w clip frames.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from core import storage
from core.detect.config import KeyframeSampling
from core.detect.frames import iter_frames, resize_short_side, upright_rgb
from core.eval.ava import AVABoxes, read_ava_csv
from core.pipeline.inputs import VideoInput

log = logging.getLogger(__name__)


class TrainDataError(ValueError):
    """The videos and the ground truth give nothing to train on."""


@dataclasses.dataclass
class KeyframeSample:
    """One annotated keyframe with its clip and persons."""

    video_id: str
    timestamp: float
    keyframe_HW3: np.ndarray
    """RGB uint8, as the detector gets it (``detector.short_side`` applied)."""
    clip_Thw3: np.ndarray
    """RGB uint8, frames resized to ``sampling.short_side``."""
    boxes_N4: np.ndarray
    """float32 x1 y1 x2 y2 as fractions of the frame."""
    actions: list[list[int]]
    """AVA action ids of each person."""


def persons_by_keyframe(gt: AVABoxes) -> dict[tuple[str, float], tuple[np.ndarray, list]]:
    """``(video_id, timestamp) -> (boxes_N4, action ids per person)``; a person is a distinct
    box of the keyframe (in first-seen order)."""
    out: dict[tuple[str, float], tuple[list, list]] = {}
    for r in range(len(gt)):
        key = (str(gt.video_id[r]), float(gt.timestamp[r]))
        boxes, actions = out.setdefault(key, ([], []))
        box = tuple(float(v) for v in gt.boxes_R4[r])
        if box in boxes:
            actions[boxes.index(box)].append(int(gt.action_id[r]))
        else:
            boxes.append(box)
            actions.append([int(gt.action_id[r])])
    return {k: (np.asarray(b, np.float32).reshape(-1, 4), a) for k, (b, a) in out.items()}


def video_samples(
    path: str,
    video_id: str,
    persons: dict[float, tuple[np.ndarray, list]],
    sampling: KeyframeSampling,
    detector_short_side: int | None,
) -> list[KeyframeSample]:
    """The samples of one local video: its annotated keyframes whose clips lie inside it."""
    frames: list[np.ndarray] = []
    fps = 0.0
    for _, frame, info in iter_frames(path, sampling.decode_threads):
        frames.append(upright_rgb(frame))
        fps = info.fps
    offsets = sampling.clip_offsets()
    out = []
    for ts, (boxes_N4, actions) in sorted(persons.items()):
        c = int(round(ts * fps))
        if c + offsets[0] < 0 or c + offsets[-1] >= len(frames):
            log.warning("%s at %.3f s: its clip is not inside the video; skipped", video_id, ts)
            continue
        key = frames[c]
        if detector_short_side is not None:
            key = resize_short_side(key, detector_short_side)
        clip = np.stack([resize_short_side(frames[c + o], sampling.short_side) for o in offsets])
        out.append(KeyframeSample(video_id, ts, key, clip, boxes_N4, actions))
    return out


def load_samples(
    videos: list[VideoInput],
    annotations_uri: str,
    sampling: KeyframeSampling,
    detector_short_side: int | None,
) -> list[KeyframeSample]:
    """Every annotated keyframe of ``videos`` (decoded once each), in video order.

    Raises:
        TrainDataError: no video has ground truth, or no annotated clip lies inside a video.
    """
    gt, _ = read_ava_csv(annotations_uri)
    by_key = persons_by_keyframe(gt)
    by_video: dict[str, dict[float, tuple]] = {}
    for (vid, ts), value in by_key.items():
        by_video.setdefault(vid, {})[ts] = value
    annotated = [v for v in videos if v.video_id in by_video]
    if not annotated:
        raise TrainDataError(
            f"none of the {len(videos)} videos has ground truth in {annotations_uri} "
            f"(its videos: {sorted(by_video)[:5]}...)"
        )
    samples: list[KeyframeSample] = []
    for v in annotated:
        with storage.local_path(v.uri) as path:
            samples += video_samples(
                path, v.video_id, by_video[v.video_id], sampling, detector_short_side
            )
    if not samples:
        raise TrainDataError("no annotated keyframe has its clip inside its video")
    log.info(
        "%d training keyframes (%d persons) from %d videos",
        len(samples), sum(len(s.boxes_N4) for s in samples), len(annotated),
    )  # fmt: skip
    return samples
