"""Column names and explicit pyarrow schemas of every table the jobs write.

These are contracts with analysts (DuckDB, pandas, Polars, Spark): change a column only with a
migration note in the README. Files live under ``<table>/part-<batch>.parquet`` (see
:mod:`core.io.commits`); ``run_id`` is a column of every row. Each file's Parquet metadata
holds ``schema_version`` and, for features, the sampling facts (:func:`with_metadata`).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = "2"

# Column names shared by pipeline stages and writers.
VIDEO_ID = "video_id"
URI = "uri"
RUN_ID = "run_id"

PROPOSALS_SCHEMA = pa.schema(
    [
        pa.field(VIDEO_ID, pa.string(), nullable=False),
        pa.field(URI, pa.string(), nullable=False),
        pa.field("t_start", pa.float64(), nullable=False),  # seconds
        pa.field("t_end", pa.float64(), nullable=False),  # seconds
        pa.field("score", pa.float32(), nullable=False),  # proposal confidence in [0, 1]
        pa.field("label", pa.string(), nullable=True),  # NULL: the localizer has no action head
        pa.field("label_id", pa.int32(), nullable=True),
        # confidence of the segment-and-label pair as a detection; mAP ranks by it
        pa.field("label_score", pa.float32(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),  # 0 = best proposal of the video
        pa.field("video_duration_s", pa.float64(), nullable=False),  # the video's duration
        pa.field("model", pa.string(), nullable=False),  # localizer checkpoint sha256 or "random"
        pa.field(RUN_ID, pa.string(), nullable=False),
    ]
)


def features_schema(C: int, T: int) -> pa.Schema:
    """The features table's schema for C × T features (a fixed-size list of C·T floats)."""
    return pa.schema(
        [
            pa.field(VIDEO_ID, pa.string(), nullable=False),
            pa.field(URI, pa.string(), nullable=False),
            # C × T float32, row-major: feature c at position t is features[c * T + t]
            # (SQL lists are 1-based: features[c * T + t + 1])
            pa.field("features", pa.list_(pa.float32(), C * T), nullable=False),
            pa.field("C", pa.int32(), nullable=False),
            pa.field("T", pa.int32(), nullable=False),
            pa.field("video_duration_s", pa.float64(), nullable=False),  # seconds of video
            pa.field("feature_span_s", pa.float64(), nullable=False),  # seconds the T span
            pa.field("fps", pa.float64(), nullable=False),
            pa.field("num_frames", pa.int64(), nullable=False),
            pa.field("num_snippets", pa.int32(), nullable=False),  # snippets before rescaling
            pa.field("num_decode_errors", pa.int32(), nullable=False),  # damaged packets skipped
            pa.field("extractor", pa.string(), nullable=False),  # recognizer name
            pa.field("extractor_checkpoint", pa.string(), nullable=False),  # URI or "random"
            pa.field(RUN_ID, pa.string(), nullable=False),
        ]
    )


ERRORS_SCHEMA = pa.schema(
    [
        pa.field(VIDEO_ID, pa.string(), nullable=False),
        pa.field(URI, pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),  # read | decode
        pa.field("error_type", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
        # False: the video was processed as far as it decoded and has features too
        pa.field("fatal", pa.bool_(), nullable=False),
        pa.field(RUN_ID, pa.string(), nullable=False),
    ]
)


def with_metadata(table: pa.Table, **facts: Any) -> pa.Table:
    """The table with ``schema_version`` and ``facts`` (JSON values) in its Parquet metadata."""
    meta = {b"schema_version": SCHEMA_VERSION.encode()}
    meta.update({k.encode(): json.dumps(v, sort_keys=True).encode() for k, v in facts.items()})
    return table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})


def duckdb_command(sql: str) -> str:
    """A shell command that runs ``sql`` with DuckDB's Python package (which has no ``duckdb``
    executable) in this project's environment and prints the result, e.g. for job summaries.

    ``sql`` must not contain double quotes (single-quoted SQL literals are fine).
    """
    if '"' in sql:
        raise ValueError("the SQL of a printed query must not contain double quotes")
    return f'python -c "import duckdb; duckdb.sql(\\"{sql}\\").show()"'
