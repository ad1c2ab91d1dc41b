"""The extract pipeline's last stage: one batch of video rows → three Parquet tables, committed.

Shape legend: B videos in the batch, C feature channels, T positions, P proposals per video.
"""

from __future__ import annotations

import dataclasses
import uuid

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


def write_batch(batch: dict[str, np.ndarray], ctx: WriteContext) -> dict[str, np.ndarray]:
    """Writes one batch's three tables and commits them; returns one summary row per video."""
    ids = [str(v) for v in batch[tables.VIDEO_ID]]
    ok_B = batch[col.OK].astype(bool)
    commits.commit_batch(
        ctx.output_uri,
        ctx.run_id,
        uuid.uuid4().hex,
        {
            "features": features_table(batch, ok_B, ctx),
            "proposals": proposals_table(batch, ok_B, ctx),
            "errors": errors_table(batch, ok_B),
        },
        ids,
    )
    return {
        tables.VIDEO_ID: np.asarray(ids, dtype=object),
        col.OK: ok_B,
        col.NUM_PROPOSALS: batch[col.PROPOSAL_VALID].sum(axis=1).astype(np.int32),
        col.ERROR_STAGE: np.asarray(batch[col.ERROR_STAGE], dtype=object),
    }


def _strings(values: np.ndarray) -> pa.Array:
    return pa.array(values.tolist(), pa.string())


def _repeat(value, n: int, type_: pa.DataType) -> pa.Array:
    return pa.array([value] * n, type_)


def features_table(batch: dict[str, np.ndarray], ok_B: np.ndarray, ctx: WriteContext) -> pa.Table:
    """The ``features`` rows of the videos that decoded (schema :data:`tables.FEATURES_SCHEMA`)."""
    feats_BCT = batch[col.FEATS][ok_B]
    B, C, T = feats_BCT.shape if len(feats_BCT) else (0, 0, 0)
    flat_BX = np.ascontiguousarray(feats_BCT.reshape(B, C * T), dtype=np.float32)
    offsets = pa.array(np.arange(B + 1, dtype=np.int32) * (C * T), pa.int32())
    features = pa.ListArray.from_arrays(offsets, pa.array(flat_BX.reshape(-1), pa.float32()))
    return pa.table(
        {
            tables.VIDEO_ID: _strings(batch[tables.VIDEO_ID][ok_B]),
            tables.URI: _strings(batch[tables.URI][ok_B]),
            "features": features,
            "C": _repeat(C, B, pa.int32()),
            "T": _repeat(T, B, pa.int32()),
            "duration": pa.array(batch[col.DURATION][ok_B], pa.float64()),
            "fps": pa.array(batch[col.FPS][ok_B], pa.float64()),
            "num_frames": pa.array(batch[col.NUM_FRAMES][ok_B], pa.int64()),
            "num_snippets": pa.array(batch[col.NUM_SNIPPETS][ok_B], pa.int32()),
            "extractor": _repeat(ctx.extractor_name, B, pa.string()),
            "extractor_checkpoint": _repeat(ctx.extractor_checkpoint, B, pa.string()),
        },
        schema=tables.FEATURES_SCHEMA,
    )


def proposals_table(batch: dict[str, np.ndarray], ok_B: np.ndarray, ctx: WriteContext) -> pa.Table:
    """One row per valid proposal of the videos that decoded (:data:`tables.PROPOSALS_SCHEMA`)."""
    valid_BP = batch[col.PROPOSAL_VALID] & ok_B[:, None]
    b_idx, p_idx = np.nonzero(valid_BP)
    props_X4 = batch[col.PROPOSALS][b_idx, p_idx]
    label_ids = batch[col.PROPOSAL_LABEL][b_idx, p_idx].astype(np.int32)
    names = np.asarray([*ctx.class_names, ""], dtype=object)  # label -1 (no head): ""
    return pa.table(
        {
            tables.VIDEO_ID: _strings(batch[tables.VIDEO_ID][b_idx]),
            "t_start": pa.array(props_X4[:, 0], pa.float64()),
            "t_end": pa.array(props_X4[:, 1], pa.float64()),
            "score": pa.array(props_X4[:, 2].astype(np.float32), pa.float32()),
            "label": _strings(names[label_ids]),
            "label_id": pa.array(label_ids, pa.int32()),
            "label_score": pa.array(props_X4[:, 3].astype(np.float32), pa.float32()),
            "rank": pa.array(p_idx.astype(np.int32), pa.int32()),
            "duration": pa.array(batch[col.DURATION][b_idx], pa.float64()),
            "model": _repeat(ctx.localizer_sha256, len(b_idx), pa.string()),
        },
        schema=tables.PROPOSALS_SCHEMA,
    )


def errors_table(batch: dict[str, np.ndarray], ok_B: np.ndarray) -> pa.Table:
    """One row per video that failed (:data:`tables.ERRORS_SCHEMA`)."""
    bad = ~ok_B
    return pa.table(
        {
            tables.VIDEO_ID: _strings(batch[tables.VIDEO_ID][bad]),
            tables.URI: _strings(batch[tables.URI][bad]),
            "stage": _strings(batch[col.ERROR_STAGE][bad]),
            "error_type": _strings(batch[col.ERROR_TYPE][bad]),
            "message": _strings(batch[col.ERROR_MESSAGE][bad]),
        },
        schema=tables.ERRORS_SCHEMA,
    )
