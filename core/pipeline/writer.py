"""The extract pipeline's last stage: one batch of video rows → three Parquet tables, committed
exactly once per video (:func:`core.io.commits.commit_batch`).

Which rows go where: a video that decoded has one ``features`` row and its ``proposals`` rows;
a video that failed for good (not a video, no frames, ...) has one ``errors`` row with
``fatal=true``; a damaged video that decoded in part has both a ``features`` row (with
``num_decode_errors`` > 0) and an ``errors`` row with ``fatal=false``. A video that failed for a
passing reason (storage) is written nowhere, so a later run processes it.

Shape legend: B videos in the batch, C feature channels, T positions, P proposals per video.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pyarrow as pa

from core.io import commits, tables
from core.pipeline import columns as col

TABLES = ("features", "proposals", "errors")


@dataclasses.dataclass(frozen=True)
class WriteContext:
    """What every row of a run records besides its video's own results."""

    output_uri: str
    run_id: str
    class_names: list[str]
    """The action classes by label id."""
    localizer_sha256: str
    """The localizer checkpoint's sha256, or ``random``: the proposals' ``model`` column."""
    extractor_name: str
    """E.g. ``Recognizer2D/scores``: the features' ``extractor`` column."""
    extractor_checkpoint: str
    """The recognizer checkpoint's URI, or ``random``."""
    sampling: dict
    """The sampling settings, recorded in the features files' metadata."""


class WriteBatchError(RuntimeError):
    """Writing or committing a batch failed (storage): the driver has Ray Data retry the
    write task (``DataContext.retried_map_errors`` names this class), which is safe because
    commits are idempotent."""


def write_batch(batch: dict[str, np.ndarray], ctx: WriteContext) -> dict[str, np.ndarray]:
    """Writes one batch's three tables and commits them; returns one summary row per video,
    with the seconds each stage spent on it (:data:`core.pipeline.columns.BUSY_COLUMNS`).

    Raises:
        WriteBatchError: storage failed (the task is retried).
    """
    started = time.perf_counter()
    keep_B = ~batch[col.TRANSIENT].astype(bool)
    batch = {k: v[keep_B] for k, v in batch.items()}
    ok_B = batch[col.OK].astype(bool)
    damaged_B = ok_B & (batch[col.NUM_DECODE_ERRORS] > 0)
    ids = [str(v) for v in batch[tables.VIDEO_ID]]
    try:
        result = commits.commit_batch(
            ctx.output_uri,
            ctx.run_id,
            None,
            {
                "features": features_table(batch, ok_B, ctx),
                "proposals": proposals_table(batch, ok_B, ctx),
                "errors": errors_table(batch, ~ok_B | damaged_B, ok_B, ctx),
            },
            ids,
        )
    except Exception as e:
        raise WriteBatchError(f"writing a batch of {len(ids)} videos failed: {e}") from e
    committed = set(result.committed)
    B = len(ids)
    timings = {
        name: np.asarray(batch[name], np.float64) if name in batch else np.zeros(B)
        for name in (*col.BUSY_COLUMNS.values(), col.ACTOR_START_SECONDS, *col.TIMES)
    }
    timings[col.SECONDS_WRITE] = np.full(B, (time.perf_counter() - started) / max(B, 1))
    return {
        tables.VIDEO_ID: np.asarray(ids, dtype=object),
        col.OK: ok_B,
        col.COMMITTED: np.asarray([v in committed for v in ids], dtype=bool),
        col.BATCH_ID: np.full(B, result.batch_id, dtype=object),
        col.NUM_PROPOSALS: batch[col.PROPOSAL_VALID].sum(axis=1).astype(np.int32),
        col.NUM_DECODE_ERRORS: batch[col.NUM_DECODE_ERRORS].astype(np.int32),
        col.ERROR_STAGE: np.asarray(batch[col.ERROR_STAGE], dtype=object),
        col.DECODER: np.asarray(batch.get(col.DECODER, np.full(B, "")), dtype=object),
        **timings,
    }


def _strings(values: np.ndarray) -> pa.Array:
    return pa.array(values.tolist(), pa.string())


def _repeat(value, n: int, type_: pa.DataType) -> pa.Array:
    return pa.array([value] * n, type_)


def features_table(batch: dict[str, np.ndarray], ok_B: np.ndarray, ctx: WriteContext) -> pa.Table:
    """The ``features`` rows of the videos that decoded (:func:`tables.features_schema`)."""
    feats_BCT = batch[col.FEATS][ok_B]
    B = len(feats_BCT)
    _, C, T = batch[col.FEATS].shape
    flat = pa.array(np.ascontiguousarray(feats_BCT, dtype=np.float32).reshape(-1), pa.float32())
    duration_B = batch[col.DURATION][ok_B]
    table = pa.table(
        {
            tables.VIDEO_ID: _strings(batch[tables.VIDEO_ID][ok_B]),
            tables.URI: _strings(batch[tables.URI][ok_B]),
            "features": pa.FixedSizeListArray.from_arrays(flat, C * T),
            "C": _repeat(C, B, pa.int32()),
            "T": _repeat(T, B, pa.int32()),
            "video_duration_s": pa.array(duration_B, pa.float64()),
            "feature_span_s": pa.array(duration_B, pa.float64()),  # the T positions span it all
            "fps": pa.array(batch[col.FPS][ok_B], pa.float64()),
            "num_frames": pa.array(batch[col.NUM_FRAMES][ok_B], pa.int64()),
            "num_snippets": pa.array(batch[col.NUM_SNIPPETS][ok_B], pa.int32()),
            "num_decode_errors": pa.array(batch[col.NUM_DECODE_ERRORS][ok_B], pa.int32()),
            "extractor": _repeat(ctx.extractor_name, B, pa.string()),
            "extractor_checkpoint": _repeat(ctx.extractor_checkpoint, B, pa.string()),
            tables.RUN_ID: _repeat(ctx.run_id, B, pa.string()),
        },
        schema=tables.features_schema(C, T),
    )
    return tables.with_metadata(table, sampling=ctx.sampling, C=C, T=T)


def proposals_table(batch: dict[str, np.ndarray], ok_B: np.ndarray, ctx: WriteContext) -> pa.Table:
    """One row per valid proposal of the videos that decoded (:data:`tables.PROPOSALS_SCHEMA`)."""
    valid_BP = batch[col.PROPOSAL_VALID] & ok_B[:, None]
    b_idx, p_idx = np.nonzero(valid_BP)
    props_X4 = batch[col.PROPOSALS][b_idx, p_idx]
    label_ids = batch[col.PROPOSAL_LABEL][b_idx, p_idx].astype(np.int32)
    no_label = label_ids < 0  # the localizer has no action head
    names = np.asarray([*ctx.class_names, ""], dtype=object)
    table = pa.table(
        {
            tables.VIDEO_ID: _strings(batch[tables.VIDEO_ID][b_idx]),
            tables.URI: _strings(batch[tables.URI][b_idx]),
            "t_start": pa.array(props_X4[:, 0], pa.float64()),
            "t_end": pa.array(props_X4[:, 1], pa.float64()),
            "score": pa.array(props_X4[:, 2].astype(np.float32), pa.float32()),
            "label": pa.array(names[label_ids].tolist(), pa.string(), mask=no_label),
            "label_id": pa.array(label_ids, pa.int32(), mask=no_label),
            "label_score": pa.array(props_X4[:, 3].astype(np.float32), pa.float32()),
            "rank": pa.array(p_idx.astype(np.int32), pa.int32()),
            "video_duration_s": pa.array(batch[col.DURATION][b_idx], pa.float64()),
            "model": _repeat(ctx.localizer_sha256, len(b_idx), pa.string()),
            tables.RUN_ID: _repeat(ctx.run_id, len(b_idx), pa.string()),
        },
        schema=tables.PROPOSALS_SCHEMA,
    )
    return tables.with_metadata(table)


def errors_table(
    batch: dict[str, np.ndarray], rows_B: np.ndarray, ok_B: np.ndarray, ctx: WriteContext
) -> pa.Table:
    """One row per video that failed or decoded only in part (:data:`tables.ERRORS_SCHEMA`)."""
    n = int(rows_B.sum())
    table = pa.table(
        {
            tables.VIDEO_ID: _strings(batch[tables.VIDEO_ID][rows_B]),
            tables.URI: _strings(batch[tables.URI][rows_B]),
            "stage": _strings(batch[col.ERROR_STAGE][rows_B]),
            "error_type": _strings(batch[col.ERROR_TYPE][rows_B]),
            "message": _strings(batch[col.ERROR_MESSAGE][rows_B]),
            "fatal": pa.array(~ok_B[rows_B], pa.bool_()),
            tables.RUN_ID: _repeat(ctx.run_id, n, pa.string()),
        },
        schema=tables.ERRORS_SCHEMA,
    )
    return tables.with_metadata(table)
