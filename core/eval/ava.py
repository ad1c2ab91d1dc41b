"""AVA frame-level mAP@0.5 of spatio-temporal detections: one AP per action class, and their mean.

Equal to MMAction2 1.2.0's ``mmaction.evaluation.functional.ava_utils.ava_eval`` (the
ActivityNet challenge's ``get_ava_performance.py``) on the same inputs, vectorised. What it
does, quirks included, and what this module reproduces:

* a frame is ``(video_id, int(timestamp))``; only frames with ground truth of a label-map class
  are evaluated (``ignore_empty_frames``), less the excluded ones; detections and ground truth
  of classes outside the label map are dropped;
* a frame's detections are ranked by score (descending; ties keep file order), its ground
  truth by its 8th column when there is one (AVA's ``person_id`` read as a score), else kept in
  file order;
* per frame and class, each detection in rank order takes the ground truth it overlaps most
  (IoU of float32 boxes, the first of equal maxima); it is a true positive if that IoU >= 0.5
  and no earlier detection took that ground truth; otherwise a false positive (it does NOT
  fall back to its second-best ground truth);
* a class's AP is VOC's (precision made monotone, summed over recall steps) over its
  detections concatenated frame by frame and ranked with ``np.argsort`` (so ties fall as in
  MMAction2), against its ground-truth count over ALL frames, excluded ones included;
* only classes with at least one detection in an evaluated frame get an AP (NaN without any
  ground truth); the mAP is the NaN-ignoring mean of those.

Vectorised: (detection, ground truth) pairs only within a frame and class, one flat IoU
array with MMAction2's dtypes, the best ground truth per detection by one lexsort, and the
greedy matching reduced to "first detection of each (frame, class, best ground truth) whose
IoU clears the threshold".

Detections from ``jobs.detect`` carry float timestamps (keyframes every few frames);
:func:`snap_to_seconds` maps them to AVA's whole-second frames first.

Shapes: ``N`` ground-truth boxes, ``M`` detections, ``P`` (detection, ground truth) pairs.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import math

import numpy as np
import pandas as pd

from core import storage

log = logging.getLogger(__name__)

IOU_THRESHOLD = 0.5
DETECTION_COLUMNS = ("video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "score")
METRIC = "frame_mAP@0.5"


class AVAInputError(ValueError):
    """Inputs that cannot be evaluated (missing columns, empty ground truth, bad files)."""


@dataclasses.dataclass
class AVABoxes:
    """Boxes of AVA's CSV layout, one per row: ground truth or detections.

    ``timestamp`` may be fractional (detections); frames are keyed by its integer part.
    ``score`` orders a frame's rows (descending); ground truth without scores holds 1.0.
    """

    video_id: np.ndarray  # (R,) object (str)
    timestamp: np.ndarray  # (R,) float64 seconds
    boxes_R4: np.ndarray  # (R, 4) float32 x1, y1, x2, y2 in [0, 1]
    action_id: np.ndarray  # (R,) int64
    score: np.ndarray  # (R,) float64

    def __len__(self) -> int:
        return len(self.action_id)

    def take(self, idx: np.ndarray) -> AVABoxes:
        return AVABoxes(
            self.video_id[idx],
            self.timestamp[idx],
            self.boxes_R4[idx],
            self.action_id[idx],
            self.score[idx],
        )

    @classmethod
    def from_frame(cls, df: pd.DataFrame, score_column: str | None) -> AVABoxes:
        score = (
            df[score_column].to_numpy(np.float64)
            if score_column is not None
            else np.ones(len(df), np.float64)
        )
        return cls(
            df["video_id"].astype(str).to_numpy(object),
            df["timestamp"].to_numpy(np.float64),
            df[["x1", "y1", "x2", "y2"]].to_numpy(np.float32).reshape(-1, 4),
            df["action_id"].to_numpy(np.int64),
            score,
        )


@dataclasses.dataclass
class AVAResult:
    """AP per evaluated class and their mean (NaN when no class could be evaluated)."""

    frame_map: float
    ap_by_class: dict[int, float]
    """AP of each class that had a detection in an evaluated frame (NaN: no ground truth)."""
    class_names: dict[int, str]
    """The label map."""
    num_frames: int
    """Frames evaluated (with ground truth, not excluded)."""
    num_ground_truth: int
    num_detections: int
    """Detections in evaluated frames."""

    def metrics(self) -> dict:
        """The ``metrics.json`` dict: ``frame_mAP@0.5``, per-class AP by name (null for a class
        without an AP), counts."""
        per_class = {}
        for cid, name in self.class_names.items():
            ap = self.ap_by_class.get(cid, math.nan)
            per_class[name] = None if math.isnan(ap) else float(ap)
        return {
            METRIC: None if math.isnan(self.frame_map) else float(self.frame_map),
            "per_class_AP": per_class,
            "per_class_AP_by_id": {
                str(cid): None if math.isnan(ap) else float(ap)
                for cid, ap in sorted(self.ap_by_class.items())
            },
            "num_classes": len(self.class_names),
            "num_classes_evaluated": int(sum(not math.isnan(v) for v in self.ap_by_class.values())),
            "num_frames": self.num_frames,
            "num_ground_truth": self.num_ground_truth,
            "num_detections": self.num_detections,
        }


# ----------------------------------------------------------------------------- reading


def read_label_map(uri: str) -> dict[int, str]:
    """AVA's label map: a ``.pbtxt`` (``label { name: "..." label_id: N }``, read as MMAction2's
    ``read_labelmap`` does) or MMAction2's ``label_map.txt`` (``N: name`` lines)."""
    text = storage.read_text(uri)
    out: dict[int, str] = {}
    if "{" in text:
        name = ""
        for line in text.splitlines():
            if line.startswith("  name:"):
                name = line.split('"')[1]
            elif line.startswith("  id:") or line.startswith("  label_id:"):
                out[int(line.strip().split(" ")[-1])] = name
    else:
        for line in text.splitlines():
            if line.strip():
                cid, name = line.strip().split(": ", 1)
                out[int(cid)] = name
    if not out:
        raise AVAInputError(f"label map {uri} holds no class")
    return out


def write_label_map_pbtxt(uri: str, names: dict[int, str]) -> None:
    """Writes a label map in AVA's ``.pbtxt`` layout (what :func:`read_label_map` reads)."""
    body = "".join(f'label {{\n  name: "{n}"\n  label_id: {i}\n}}\n' for i, n in names.items())
    storage.write_text(uri, body)


def read_ava_csv(uri: str) -> tuple[AVABoxes, bool]:
    """An AVA CSV (``video_id,timestamp,x1,y1,x2,y2,action_id[,score|person_id]``, no header).

    Returns:
        The rows, with the 8th column as ``score`` (1.0 without one), and whether it had one.
    """
    data = storage.read_bytes(uri)
    if not data.strip():
        raise AVAInputError(f"{uri} is empty")
    df = pd.read_csv(io.BytesIO(data), header=None, dtype={0: str})
    if df.shape[1] not in (7, 8):
        raise AVAInputError(f"{uri}: expected 7 or 8 columns, got {df.shape[1]}")
    df.columns = list(DETECTION_COLUMNS[:7]) + (["score"] if df.shape[1] == 8 else [])
    has_score = df.shape[1] == 8
    return AVABoxes.from_frame(df, "score" if has_score else None), has_score


def read_exclusions(uri: str | None) -> set[tuple[str, int]]:
    """AVA's excluded timestamps (``video_id,timestamp`` rows), as frame keys."""
    if uri is None:
        return set()
    data = storage.read_bytes(uri)
    if not data.strip():
        return set()
    df = pd.read_csv(io.BytesIO(data), header=None, dtype={0: str})
    return {(str(v), int(t)) for v, t in zip(df[0], df[1], strict=True)}


def read_detections(uri: str, run_id: str | None = None) -> AVABoxes:
    """Detections from Parquet (a ``jobs.detect`` output's ``detections/``, hive-partitioned, or
    any Parquet file or folder with at least :data:`DETECTION_COLUMNS`) or from an AVA CSV."""
    if uri.lower().endswith(".csv"):
        boxes, has_score = read_ava_csv(uri)
        if not has_score:
            raise AVAInputError(f"{uri}: detections need a score column (8th)")
        return boxes
    import pyarrow.dataset as pads

    fs, path = storage.pyarrow_filesystem(uri)
    try:
        dataset = pads.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
    except (FileNotFoundError, OSError) as e:
        raise AVAInputError(f"cannot read detections at {uri}: {e}") from e
    missing = [c for c in DETECTION_COLUMNS if c not in dataset.schema.names]
    if missing:
        raise AVAInputError(f"detections at {uri} lack columns {missing}")
    filt = None
    if run_id is not None:
        filt = pads.field("run_id") == run_id
    table = dataset.to_table(columns=list(DETECTION_COLUMNS), filter=filt)
    return AVABoxes.from_frame(table.to_pandas(), "score")


def write_ava_csv(uri: str, boxes: AVABoxes, with_score: bool = True) -> None:
    """Writes rows in AVA's CSV layout; timestamps as integers when they are whole seconds."""
    ts = boxes.timestamp
    whole = np.all(ts == np.round(ts))
    cols = {
        "video_id": boxes.video_id,
        "timestamp": ts.astype(np.int64) if whole else ts,
        # float32 values as float64 print with repr's shortest round-trip digits
        **{
            k: boxes.boxes_R4[:, i].astype(np.float64)
            for i, k in enumerate(("x1", "y1", "x2", "y2"))
        },
        "action_id": boxes.action_id,
    }
    if with_score:
        cols["score"] = boxes.score.astype(np.float64)
    storage.write_text(uri, pd.DataFrame(cols).to_csv(header=False, index=False))


# ----------------------------------------------------------------------------- keyframes


def snap_to_seconds(det: AVABoxes, tolerance: float = 0.5) -> AVABoxes:
    """Detections at AVA's whole-second frames: of each video's keyframes within ``tolerance``
    seconds of a whole second ``s``, the nearest one's rows get timestamp ``s``; others go.

    Detections already at whole seconds come back unchanged.
    """
    if not len(det):
        return det
    sec = np.round(det.timestamp)
    off = np.abs(det.timestamp - sec)
    near = off <= tolerance
    frame = pd.DataFrame({"v": det.video_id, "s": sec, "off": off})
    best = frame[near].groupby(["v", "s"], sort=False)["off"].transform("min")
    keep = np.zeros(len(det), bool)
    keep[np.nonzero(near)[0]] = (frame["off"][near] == best).to_numpy()
    out = det.take(np.nonzero(keep)[0])
    out.timestamp = np.round(out.timestamp)
    return out


# ----------------------------------------------------------------------------- metric


def _frame_ids(
    gt: AVABoxes, det: AVABoxes, excluded: set[tuple[str, int]]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Frame index of every ground-truth and detection row (-1: not evaluated).

    Evaluated frames are numbered in the order they first appear in the ground truth.
    """
    gt_keys = pd.MultiIndex.from_arrays([gt.video_id, gt.timestamp.astype(np.int64)])
    codes, uniques = pd.factorize(gt_keys, sort=False)
    ok_U = np.array([(v, int(t)) not in excluded for v, t in uniques], dtype=bool)
    rank_U = np.full(len(uniques), -1, np.int64)
    rank_U[ok_U] = np.arange(int(ok_U.sum()))
    gt_frame = rank_U[codes]
    det_keys = pd.MultiIndex.from_arrays([det.video_id, det.timestamp.astype(np.int64)])
    det_codes = uniques.get_indexer(det_keys)
    det_frame = np.where(det_codes >= 0, rank_U[det_codes], -1)
    return gt_frame, det_frame, int(ok_U.sum())


def _iou_pairs(det_P4: np.ndarray, gt_P4: np.ndarray) -> np.ndarray:
    """IoU of paired float32 boxes with MMAction2's ``np_box_ops.iou`` dtypes (float32 areas and
    clipped extents, float64 intersection and union), so a 0.5 tie falls the same way."""
    zeros = np.zeros(len(det_P4))
    h = np.maximum(
        zeros, np.minimum(det_P4[:, 3], gt_P4[:, 3]) - np.maximum(det_P4[:, 1], gt_P4[:, 1])
    )
    w = np.maximum(
        zeros, np.minimum(det_P4[:, 2], gt_P4[:, 2]) - np.maximum(det_P4[:, 0], gt_P4[:, 0])
    )
    inter = h * w
    area_d = (det_P4[:, 3] - det_P4[:, 1]) * (det_P4[:, 2] - det_P4[:, 0])
    area_g = (gt_P4[:, 3] - gt_P4[:, 1]) * (gt_P4[:, 2] - gt_P4[:, 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / ((area_d + area_g) - inter)


def _true_positives(
    gt: AVABoxes, gt_frame: np.ndarray, det: AVABoxes, det_frame: np.ndarray, threshold: float
) -> np.ndarray:
    """For detections already in evaluation order (frame, then rank): true positive or not."""
    M = len(det)
    num_classes = int(max(gt.action_id.max(initial=0), det.action_id.max(initial=0))) + 1
    gt_group = gt_frame * num_classes + gt.action_id
    det_group = det_frame * num_classes + det.action_id
    # ground truth within a frame in order of its score (descending, stable): its argmax order
    gt_order = np.lexsort((np.arange(len(gt)), -gt.score, gt_group))
    gt_group_s = gt_group[gt_order]
    start_M = np.searchsorted(gt_group_s, det_group, side="left")
    count_M = np.searchsorted(gt_group_s, det_group, side="right") - start_M
    det_P = np.repeat(np.arange(M), count_M)
    offset_P = np.arange(len(det_P)) - np.repeat(np.cumsum(count_M) - count_M, count_M)
    gt_pos_P = np.repeat(start_M, count_M) + offset_P  # position in gt_order
    iou_P = _iou_pairs(det.boxes_R4[det_P], gt.boxes_R4[gt_order[gt_pos_P]])
    key_P = np.where(np.isnan(iou_P), np.inf, iou_P)  # np.argmax takes a NaN first
    best = np.lexsort((gt_pos_P, -key_P, det_P))
    first = np.ones(len(best), bool)
    first[1:] = det_P[best][1:] != det_P[best][:-1]
    best = best[first]  # one pair per detection that has ground truth of its class
    hit = iou_P[best] >= threshold
    det_hit, gt_hit = det_P[best][hit], gt_pos_P[best][hit]
    # a hit is true if no earlier detection (lower index: evaluation order) hit that ground truth
    order = np.lexsort((det_hit, gt_hit))
    new = np.ones(len(order), bool)
    new[1:] = gt_hit[order][1:] != gt_hit[order][:-1]
    tp_M = np.zeros(M, bool)
    tp_M[det_hit[order][new]] = True
    return tp_M


def _average_precision(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> float:
    """MMAction2's ``compute_precision_recall`` + ``compute_average_precision``."""
    if num_gt == 0:
        return math.nan
    order = np.argsort(scores)[::-1]
    tp_sorted = tp.astype(int)[order]
    cum_tp = np.cumsum(tp_sorted)
    cum_fp = np.cumsum(1 - tp_sorted)
    precision = cum_tp.astype(float) / (cum_tp + cum_fp)
    recall = cum_tp.astype(float) / num_gt
    recall = np.concatenate([[0], recall, [1]])
    precision = np.concatenate([[0], precision, [0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.where(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[idx] - recall[idx - 1]) * precision[idx]))


def frame_map(
    gt: AVABoxes,
    det: AVABoxes,
    class_names: dict[int, str],
    excluded: set[tuple[str, int]] | None = None,
    iou_threshold: float = IOU_THRESHOLD,
) -> AVAResult:
    """AVA's frame-level mAP (see the module docstring for the exact rules).

    Args:
        gt: ground truth (``score`` orders each frame's boxes: AVA's 8th column, or 1.0).
        det: detections at whole-second frames (see :func:`snap_to_seconds`).
        class_names: the label map; only its classes count.
        excluded: frames ``(video_id, second)`` left out.
    """
    whitelist = np.asarray(sorted(class_names), np.int64)
    gt = gt.take(np.nonzero(np.isin(gt.action_id, whitelist))[0])
    det = det.take(np.nonzero(np.isin(det.action_id, whitelist))[0])
    if not len(gt):
        raise AVAInputError("no ground truth of a label-map class")
    gt_frame, det_frame, num_frames = _frame_ids(gt, det, excluded or set())
    # the ground-truth count of a class includes excluded frames, as in MMAction2
    gt_count = dict(zip(*np.unique(gt.action_id, return_counts=True), strict=True))
    keep_gt = gt_frame >= 0
    # detections of evaluated frames, in evaluation order: frame, score descending, file order
    ev = np.nonzero(det_frame >= 0)[0]
    ev = ev[np.lexsort((ev, -det.score[ev], det_frame[ev]))]
    det_e, det_frame_e = det.take(ev), det_frame[ev]
    gt_e = gt.take(np.nonzero(keep_gt)[0])
    tp = _true_positives(gt_e, gt_frame[keep_gt], det_e, det_frame_e, iou_threshold)
    scores32 = det_e.score.astype(np.float32)
    ap_by_class = {}
    for cid in np.unique(det_e.action_id):
        sel = det_e.action_id == cid
        ap_by_class[int(cid)] = _average_precision(
            scores32[sel], tp[sel], int(gt_count.get(cid, 0))
        )
    values = [v for v in ap_by_class.values() if not math.isnan(v)]
    mean = float(np.mean(values)) if values else math.nan
    return AVAResult(
        frame_map=mean,
        ap_by_class=ap_by_class,
        class_names=dict(sorted(class_names.items())),
        num_frames=num_frames,
        num_ground_truth=len(gt),
        num_detections=len(det_e),
    )


def evaluate_detections(
    detections_uri: str,
    annotations_uri: str,
    label_map_uri: str,
    exclusions_uri: str | None = None,
    run_id: str | None = None,
    snap_tolerance: float = 0.5,
) -> AVAResult:
    """Reads detections (Parquet or AVA CSV), AVA CSV ground truth, the label map and the
    exclusions, snaps keyframes to whole seconds and computes :func:`frame_map`."""
    det = snap_to_seconds(read_detections(detections_uri, run_id), snap_tolerance)
    gt, _ = read_ava_csv(annotations_uri)
    return frame_map(gt, det, read_label_map(label_map_uri), read_exclusions(exclusions_uri))


# ----------------------------------------------------------------------------- job entry


def add_detection_args(parser: argparse.ArgumentParser) -> None:
    """``jobs.evaluate``'s spatio-temporal mode: ``--detections`` with AVA ground truth."""
    parser.add_argument("--detections", default=None, help="detections Parquet (or AVA CSV) URI")
    parser.add_argument("--label-map", default=None, help="AVA label map (.pbtxt or N: name txt)")
    parser.add_argument("--exclusions", default=None, help="AVA excluded-timestamps CSV")


def run_detections(args: argparse.Namespace) -> int:
    """Evaluates ``args.detections`` against ``args.annotations`` (AVA CSV) and writes
    ``args.output``/metrics.json. Returns the exit code: 0 done, 2 unusable input."""
    if not args.label_map:
        log.error("--detections needs --label-map")
        return 2
    try:
        result = evaluate_detections(
            args.detections,
            args.annotations,
            args.label_map,
            args.exclusions,
            run_id=getattr(args, "run_id", None),
        )
    except (FileNotFoundError, AVAInputError, ValueError) as e:
        log.error("%s", e)
        return 2
    uri = storage.join(args.output, "metrics.json")
    storage.write_text(uri, json.dumps(result.metrics(), indent=2, allow_nan=False) + "\n")
    value = result.frame_map
    log.info(
        "%s = %s over %d classes, %d frames, %d detections; wrote %s",
        METRIC,
        "n/a" if math.isnan(value) else f"{value:.4f}",
        len(result.ap_by_class),
        result.num_frames,
        result.num_detections,
        uri,
    )
    return 0
