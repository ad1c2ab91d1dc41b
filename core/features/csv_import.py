"""Import of ActivityNet's published BMN features (MMAction2's ``csv_mean_100``) as features Parquet.

Each video is one file ``v_<id>.csv``: a header ``f0,f1,...,f399`` and one row per temporal
position (100 rows), the layout MMAction2's ``LoadLocalizationFeature`` reads and transposes to
C × T. Rows become features rows (C × T row-major) with ``feature_span_s`` the seconds the
positions span, MMAction2's corrected duration ``feature_frame / duration_frame *
duration_second`` (``GenerateLocalizationLabels``); annotations without frame facts (official
ActivityNet JSON) give their ``duration``.

Batches are written with :func:`core.io.commits.commit_batch`, so a killed import resumes like
an extract run: uncommitted files are removed, committed videos are skipped.

Shape legend: T positions (CSV rows), C channels (CSV columns).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import posixpath
import re
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from core import storage
from core.eval.annotations import VideoAnnotation
from core.io import commits, tables

log = logging.getLogger(__name__)

EXTRACTOR = "activitynet_csv_mean"
_COLUMN_RE = re.compile(r"^f(\d+)$")


class CsvFeatureError(ValueError):
    """A feature CSV that is not in MMAction2's csv_mean layout."""


@dataclasses.dataclass(frozen=True)
class VideoFacts:
    """What a features row records about a video besides its features."""

    feature_span_s: float
    """Seconds the feature positions span (MMAction2's corrected duration)."""
    video_duration_s: float
    fps: float
    num_frames: int


def video_facts(anno: VideoAnnotation) -> VideoFacts:
    """Corrected duration, fps and frames from either annotation format."""
    extra = anno.extra
    frames = extra.get("duration_frame")
    duration = anno.duration
    if frames and extra.get("feature_frame"):
        duration = float(extra["feature_frame"]) / float(frames) * anno.duration
    fps = float(extra.get("fps") or (frames / anno.duration if frames and anno.duration else 0.0))
    num_frames = int(frames) if frames else int(round(fps * anno.duration))
    return VideoFacts(
        feature_span_s=duration, video_duration_s=anno.duration, fps=fps, num_frames=num_frames
    )


def parse_feature_csv(content: bytes, uri: str = "") -> np.ndarray:
    """feats_TC (float32) from one csv_mean file's bytes; columns ordered by their f-index."""
    table = pacsv.read_csv(io.BytesIO(content))
    index = [_COLUMN_RE.match(name) for name in table.column_names]
    if not table.num_columns or not all(index):
        raise CsvFeatureError(f"{uri}: header must be f0,f1,...; got {table.column_names[:4]}...")
    order = np.argsort([int(m.group(1)) for m in index])
    if sorted(int(m.group(1)) for m in index) != list(range(table.num_columns)):
        raise CsvFeatureError(f"{uri}: columns are not f0..f{table.num_columns - 1}")
    columns = [table.column(int(i)).to_numpy().astype(np.float32) for i in order]
    return np.stack(columns, axis=1)


def csv_video_id(uri: str) -> str:
    """``v_abc`` for ``.../v_abc.csv`` (MMAction2's annotation key)."""
    return posixpath.splitext(posixpath.basename(uri.replace("\\", "/")))[0]


def features_rows(
    ids: list[str], uris: list[str], feats: list[np.ndarray], facts: list[VideoFacts],
    source: str, run_id: str,
) -> pa.Table:  # fmt: skip
    """Features table rows; ``feats`` are T × C as read, stored transposed (C × T)."""
    shapes = {f.shape for f in feats}
    if len(shapes) != 1:
        raise CsvFeatureError(f"feature CSVs of one import must share T × C, got {sorted(shapes)}")
    ((T, C),) = shapes
    flat = np.concatenate([np.ascontiguousarray(f.T, dtype=np.float32).reshape(-1) for f in feats])
    n = len(ids)
    return pa.table(
        {
            tables.VIDEO_ID: pa.array(ids, pa.string()),
            tables.URI: pa.array(uris, pa.string()),
            "features": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), C * T),
            "C": pa.array([C] * n, pa.int32()),
            "T": pa.array([T] * n, pa.int32()),
            "video_duration_s": pa.array([x.video_duration_s for x in facts], pa.float64()),
            "feature_span_s": pa.array([x.feature_span_s for x in facts], pa.float64()),
            "fps": pa.array([x.fps for x in facts], pa.float64()),
            "num_frames": pa.array([x.num_frames for x in facts], pa.int64()),
            "num_snippets": pa.array([T] * n, pa.int32()),
            "num_decode_errors": pa.array([0] * n, pa.int32()),
            "extractor": pa.array([EXTRACTOR] * n, pa.string()),
            "extractor_checkpoint": pa.array([source] * n, pa.string()),
            tables.RUN_ID: pa.array([run_id] * n, pa.string()),
        },
        schema=tables.features_schema(C, T),
    )


def import_batch(
    items: list[tuple[str, str]], facts: Mapping[str, VideoFacts], output_uri: str, run_id: str,
    source: str,
) -> dict:  # fmt: skip
    """Reads one batch of (video_id, csv URI), writes its Parquet file and commit marker."""
    feats = [parse_feature_csv(storage.read_bytes(uri), uri) for _, uri in items]
    ids = [vid for vid, _ in items]
    table = features_rows(
        ids, [u for _, u in items], feats, [facts[v] for v in ids], source, run_id
    )
    result = commits.commit_batch(output_uri, run_id, None, {"features": table}, ids)
    return {"batch_id": result.batch_id, "committed": result.committed}


def plan_import(
    csv_uris: list[str], annos: Mapping[str, VideoAnnotation], done: set[str]
) -> tuple[list[tuple[str, str]], dict[str, VideoFacts], list[str]]:
    """The (video_id, uri) pairs to import, their facts, and CSV ids without annotations."""
    todo, facts, unannotated = [], {}, []
    for uri in csv_uris:
        vid = csv_video_id(uri)
        anno = annos.get(vid) or annos.get(vid.removeprefix("v_")) or annos.get("v_" + vid)
        if anno is None:
            unannotated.append(vid)
            continue
        if vid not in done:
            todo.append((vid, uri))
            facts[vid] = video_facts(anno)
    return todo, facts, unannotated
