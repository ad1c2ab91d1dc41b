"""The detect job's writer: a video's keyframe rows back together, then its tables, committed.

A video's keyframes travel through the Ray Data stages in many blocks, in no fixed order;
it is done when its ``end`` row and all of its keyframes have arrived (:class:`VideoAssembler`,
duplicates from a retried task dropped). Finished videos are committed in batches of
``write_batch_size``: the ``detections`` and ``errors`` Parquet files, then the commit marker
(:class:`OutputSession`, the one place that calls :mod:`core.io.commits`: the run's lease,
recovery of interrupted batches, what is done, exactly-once commits, the run index). The writer runs
where the stream is consumed (the job's driver) because only there does every row of a video
arrive; what reaches it is boxes and scores, not pixels.

Shape legend: K keyframes of a video, P persons (padded), L label-map classes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from core.detect import schema as t
from core.io import commits, index, leases
from core.io.tables import RUN_ID, URI, VIDEO_ID


@dataclasses.dataclass(frozen=True)
class DetectWriteContext:
    """What every row of a run records besides its video's own results."""

    output_uri: str
    run_id: str
    label_ids: list[int]
    """AVA ids of the label map's classes, in the order of ``ACTION_SCORES``' last axis."""
    label_names: list[str]
    score_thr: float
    """``action.score_thr``: an action becomes a row when its score exceeds it."""
    detector_model: str
    action_model: str


@dataclasses.dataclass
class VideoResult:
    """One video's outcome: its keyframes' persons and action scores, or its error."""

    video_id: str
    uri: str
    ok: bool
    error_stage: str
    error_type: str
    error_message: str
    num_frames: int
    fps: float
    frame_index_K: np.ndarray
    timestamp_K: np.ndarray
    clip_wh_K2: np.ndarray
    num_persons_K: np.ndarray
    boxes_KP4: np.ndarray  # clip pixels
    person_scores_KP: np.ndarray
    action_scores_KPL: np.ndarray

    def normalised_boxes(self) -> np.ndarray:
        """Boxes as fractions of the frame, float32 as the demo's ``pack_result`` divides."""
        boxes = self.boxes_KP4.copy()
        boxes[..., 0::2] /= self.clip_wh_K2[:, None, 0:1].astype(np.float32)
        boxes[..., 1::2] /= self.clip_wh_K2[:, None, 1:2].astype(np.float32)
        return boxes


class VideoAssembler:
    """Collects keyframe rows per video until the video is complete."""

    def __init__(self) -> None:
        self._keyframes: dict[str, dict[int, dict]] = {}
        self._end: dict[str, dict] = {}

    def add(self, batch: dict[str, np.ndarray]) -> list[str]:
        """Adds a batch of rows; returns the ids of the videos it completed."""
        touched = set()
        for i in range(len(batch[VIDEO_ID])):
            vid = str(batch[VIDEO_ID][i])
            row = {k: batch[k][i] for k in batch}
            if bool(row[t.IS_END]):
                self._end[vid] = row
            else:
                self._keyframes.setdefault(vid, {})[int(row[t.FRAME_INDEX])] = row
            touched.add(vid)
        return sorted(v for v in touched if self._complete(v))

    def _complete(self, vid: str) -> bool:
        end = self._end.get(vid)
        if end is None:
            return False
        return not bool(end[t.OK]) or len(self._keyframes.get(vid, {})) >= int(end[t.NUM_KEYFRAMES])

    @property
    def pending(self) -> int:
        return len(set(self._keyframes) | set(self._end))

    def pop(self, vid: str, num_labels: int, max_persons: int) -> VideoResult:
        end = self._end.pop(vid)
        kfs = self._keyframes.pop(vid, {})
        ok = bool(end[t.OK])
        rows = [kfs[k] for k in sorted(kfs)] if ok else []

        def stack(key: str, empty_shape: tuple, dtype) -> np.ndarray:
            if not rows:
                return np.zeros((0, *empty_shape), dtype)
            return np.stack([np.asarray(r[key], dtype) for r in rows])

        return VideoResult(
            video_id=vid,
            uri=str(end[URI]),
            ok=ok,
            error_stage=str(end[t.ERROR_STAGE]),
            error_type=str(end[t.ERROR_TYPE]),
            error_message=str(end[t.ERROR_MESSAGE]),
            num_frames=int(end[t.NUM_FRAMES]),
            fps=float(end[t.FPS]),
            frame_index_K=stack(t.FRAME_INDEX, (), np.int64),
            timestamp_K=stack(t.TIMESTAMP, (), np.float64),
            clip_wh_K2=stack(t.CLIP_WH, (2,), np.int32),
            num_persons_K=stack(t.NUM_PERSONS, (), np.int32),
            boxes_KP4=stack(t.BOXES, (max_persons, 4), np.float32),
            person_scores_KP=stack(t.PERSON_SCORES, (max_persons,), np.float32),
            action_scores_KPL=stack(t.ACTION_SCORES, (max_persons, num_labels), np.float32),
        )


def _s(values: list) -> pa.Array:
    return pa.array(values, pa.string())


def detections_table(videos: list[VideoResult], ctx: DetectWriteContext) -> pa.Table:
    """One row per (video, keyframe, person, action above ``score_thr``) (:data:`DETECTIONS_SCHEMA`)."""
    parts = []
    names = np.asarray(ctx.label_names, dtype=object)
    ids = np.asarray(ctx.label_ids, np.int32)
    for v in videos:
        if not v.ok or not len(v.frame_index_K):
            continue
        P = v.boxes_KP4.shape[1]
        real_KP = np.arange(P)[None, :] < v.num_persons_K[:, None]
        k, p, a = np.nonzero((v.action_scores_KPL > ctx.score_thr) & real_KP[:, :, None])
        boxes = v.normalised_boxes()[k, p]
        n = len(k)
        parts.append(
            {
                VIDEO_ID: [v.video_id] * n,
                URI: [v.uri] * n,
                "timestamp": v.timestamp_K[k],
                "frame_index": v.frame_index_K[k],
                "x1": boxes[:, 0],
                "y1": boxes[:, 1],
                "x2": boxes[:, 2],
                "y2": boxes[:, 3],
                "person_score": v.person_scores_KP[k, p],
                "person_index": p.astype(np.int32),
                "action_id": ids[a],
                "action": names[a].tolist(),
                "score": v.action_scores_KPL[k, p, a],
            }
        )
    cols: dict[str, list] = {f.name: [] for f in t.DETECTIONS_SCHEMA}
    for part in parts:
        for key, values in part.items():
            cols[key].extend(values.tolist() if isinstance(values, np.ndarray) else values)
    n = len(cols[VIDEO_ID])
    cols["detector_model"] = [ctx.detector_model] * n
    cols["action_model"] = [ctx.action_model] * n
    cols[RUN_ID] = [ctx.run_id] * n
    return pa.table(
        {f.name: pa.array(cols[f.name], f.type) for f in t.DETECTIONS_SCHEMA},
        schema=t.DETECTIONS_SCHEMA,
    )


def errors_table(videos: list[VideoResult], run_id: str) -> pa.Table:
    """One row per video that failed (:data:`core.io.tables.ERRORS_SCHEMA`; fatal: a failed
    video has no detections)."""
    bad = [v for v in videos if not v.ok]
    values = {
        VIDEO_ID: [v.video_id for v in bad],
        URI: [v.uri for v in bad],
        "stage": [v.error_stage for v in bad],
        "error_type": [v.error_type for v in bad],
        "message": [v.error_message for v in bad],
        "fatal": [True] * len(bad),
        RUN_ID: [run_id] * len(bad),
    }
    schema = t.ERRORS_SCHEMA
    return pa.table({f.name: pa.array(values[f.name], f.type) for f in schema}, schema=schema)


class OutputSession:
    """A run's hold on its output: lease, recovery, what is done, commits, the run index.

    ``with OutputSession(uri, run_id) as out:`` renews the run's lease, finishes or undoes
    batches of dead runs, and reads the videos already committed (``out.done``); on exit it
    flushes the index and recovers this run's own dead batch attempts.
    """

    def __init__(self, output_uri: str, run_id: str) -> None:
        self.output_uri, self.run_id = output_uri, run_id
        self.done: set[str] = set()
        self._lease = leases.RunLease(output_uri, run_id)
        self._index: index.IndexWriter | None = None

    def __enter__(self) -> OutputSession:
        self._lease.__enter__()
        commits.recover(self.output_uri)
        index.apply_retractions(self.output_uri)
        self.done = set(index.committed_videos(self.output_uri))
        self._index = index.IndexWriter(self.output_uri, self.run_id)
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._index is not None:
                self._index.flush()
            commits.recover(self.output_uri, own_run=self.run_id)
        finally:
            self._lease.__exit__(*exc)

    def commit(self, videos: list[VideoResult], ctx: DetectWriteContext) -> tuple[set[str], int]:
        """Commits the videos' tables exactly once per video; returns the videos this batch
        committed (others were claimed by another batch) and the detection rows written."""
        detections = detections_table(videos, ctx)
        ids = [v.video_id for v in videos]
        result = commits.commit_batch(
            self.output_uri,
            self.run_id,
            None,
            {"detections": detections, "errors": errors_table(videos, self.run_id)},
            ids,
        )
        committed = set(result.committed)
        ok = {v.video_id: v.ok for v in videos}
        mine = [v for v in ids if v in committed]
        self._index.add(mine, [result.batch_id] * len(mine), [ok[v] for v in mine])
        rows = sum(1 for v in detections.column(VIDEO_ID).to_pylist() if v in committed)
        return committed, rows
