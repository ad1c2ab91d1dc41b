"""Rendered videos like the demo's: the frames around each keyframe with its persons' boxes and
action labels (``renders/<video_id>.mp4``, H.264 through PyAV, drawn with OpenCV).

As ``demo/demo_spatiotemporal_det.py`` does: ``predict_stepsize / output_stepsize`` output
frames per keyframe, spread evenly around it (its ``dense_timestamps``), each showing that
keyframe's boxes and up to ``max_labels`` labels per person (highest score first, names
abbreviated, ``name: 0.87``), in the demo's blue palette, at ``output_fps``; the frames are
the video's own, at its resolution.
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction

import av
import cv2
import numpy as np

from core import storage
from core.detect.config import RenderSection
from core.detect.frames import iter_frames, upright_rgb
from core.detect.writer import VideoResult

# the demo's palette (RGB): box colour, then one background per label row
PALETTE = [(3, 4, 94), (2, 62, 138), (0, 119, 182), (0, 150, 199), (0, 180, 216), (72, 202, 228)]
FONT, FONT_SCALE, THICKNESS, LINE_TYPE = cv2.FONT_HERSHEY_DUPLEX, 0.5, 1, 1
WHITE = (255, 255, 255)


def abbrev(name: str) -> str:
    """``take (an object) from (a person)`` -> ``take ... from ...``, as the demo shortens."""
    while "(" in name:
        st, ed = name.find("("), name.find(")")
        name = name[:st] + "..." + name[ed + 1 :]
    return name


def dense_frame_indices(frame_index_K: np.ndarray, predict_stepsize: int, n: int) -> np.ndarray:
    """0-based frames shown, ``n`` per keyframe: the demo's ``dense_timestamps`` (1-based)."""
    ts = frame_index_K.astype(np.float64) + 1
    start = ts[0] - predict_stepsize / n * (n - 1) / 2
    dense = (np.arange(len(ts) * n) * predict_stepsize / n + start).astype(np.int64)
    return dense - 1


def annotations(result: VideoResult, label_names: list[str], score_thr: float):
    """Per keyframe: ``[(box_4 normalised, [names], [scores])]`` of persons with a label."""
    boxes = result.normalised_boxes()
    out = []
    for k in range(len(result.frame_index_K)):
        persons = []
        for p in range(int(result.num_persons_K[k])):
            s_L = result.action_scores_KPL[k, p]
            idx = [i for i in np.argsort(-s_L, kind="stable") if s_L[i] > score_thr]
            if idx:
                persons.append(
                    (boxes[k, p], [label_names[i] for i in idx], [float(s_L[i]) for i in idx])
                )
        out.append(persons)
    return out


def draw(frame_HW3: np.ndarray, persons, max_labels: int) -> np.ndarray:
    """Boxes and labels on an RGB frame (a copy), as the demo's ``visualize``."""
    frame = frame_HW3.copy()
    h, w = frame.shape[:2]
    scale = np.array([w, h, w, h])
    for box, names, scores in persons:
        x1, y1, x2, y2 = (box * scale).astype(np.int64).tolist()
        cv2.rectangle(frame, (x1, y1), (x2, y2), PALETTE[0], 2)
        for k, (name, score) in enumerate(zip(names[:max_labels], scores, strict=False)):
            text = f"{abbrev(name)}: {score:>.2f}"
            loc = (x1, 18 + k * 18 + y1)
            width = cv2.getTextSize(text, FONT, FONT_SCALE, THICKNESS)[0][0]
            cv2.rectangle(
                frame, (loc[0] + width, loc[1] - 14), (loc[0], loc[1] + 2), PALETTE[k + 1], -1
            )
            cv2.putText(frame, text, loc, FONT, FONT_SCALE, WHITE, THICKNESS, LINE_TYPE)
    return frame


def render_video(
    result: VideoResult,
    out_uri: str,
    label_names: list[str],
    score_thr: float,
    predict_stepsize: int,
    cfg: RenderSection,
) -> int:
    """Decodes ``result.uri`` again and writes the annotated MP4 to ``out_uri``; returns the
    number of frames written (0: no keyframe, nothing written)."""
    if not len(result.frame_index_K):
        return 0
    n = predict_stepsize // cfg.output_stepsize
    shown = dense_frame_indices(result.frame_index_K, predict_stepsize, n)
    per_frame = {}
    for j, persons in enumerate(annotations(result, label_names, score_thr)):
        for f in shown[j * n : (j + 1) * n].tolist():
            per_frame.setdefault(f, []).append(persons)
    frames: dict[int, np.ndarray] = {}
    with storage.local_path(result.uri) as path:
        for i, frame, _ in iter_frames(path):
            if i in per_frame:
                frames[i] = upright_rgb(frame)
            if i > max(per_frame):
                break
    fd, local = tempfile.mkstemp(suffix=".mp4")
    os.close(fd)
    written = 0
    try:
        with av.open(local, mode="w") as container:
            stream = None
            for f in shown.tolist():
                if f not in frames:
                    continue
                for persons in per_frame[f][:1]:
                    img = draw(frames[f], persons, cfg.max_labels)
                    img = img[
                        : img.shape[0] // 2 * 2, : img.shape[1] // 2 * 2
                    ]  # yuv420p: even sides
                    if stream is None:
                        stream = container.add_stream("libx264", rate=Fraction(cfg.output_fps))
                        stream.height, stream.width = img.shape[:2]
                        stream.pix_fmt = "yuv420p"
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                    container.mux(stream.encode(frame))
                    written += 1
            if stream is not None:
                container.mux(stream.encode(None))
        if written:
            storage.put_file(local, out_uri)
    finally:
        os.remove(local)
    return written
