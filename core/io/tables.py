"""Column names and explicit pyarrow schemas of every table the jobs write.

These are contracts with analysts (DuckDB, pandas, Polars, Spark): change a column only with a
migration note in the README. Files live under ``<table>/run_id=<run>/part-<batch>.parquet``
(see :mod:`core.io.commits`): ``run_id`` is the hive partition column, so it is not stored
inside the files; every hive-aware reader adds it.
"""

from __future__ import annotations

import pyarrow as pa

# Column names shared by pipeline stages and writers.
VIDEO_ID = "video_id"
URI = "uri"
RUN_ID = "run_id"

PROPOSALS_SCHEMA = pa.schema(
    [
        pa.field(VIDEO_ID, pa.string(), nullable=False),
        pa.field("t_start", pa.float64(), nullable=False),  # seconds
        pa.field("t_end", pa.float64(), nullable=False),  # seconds
        pa.field("score", pa.float32(), nullable=False),  # proposal confidence in [0, 1]
        pa.field("label", pa.string(), nullable=False),
        pa.field("label_id", pa.int32(), nullable=False),
        pa.field(
            "label_score", pa.float32(), nullable=False
        ),  # detection confidence; mAP ranks by it
        pa.field("rank", pa.int32(), nullable=False),  # 0 = best proposal of the video
        pa.field("duration", pa.float64(), nullable=False),  # the video's duration, seconds
        pa.field("model", pa.string(), nullable=False),  # localizer checkpoint sha256 or "random"
    ]
)

FEATURES_SCHEMA = pa.schema(
    [
        pa.field(VIDEO_ID, pa.string(), nullable=False),
        pa.field(URI, pa.string(), nullable=False),
        # C × T float32, row-major: feature c at position t is features[c * T + t]
        pa.field("features", pa.list_(pa.float32()), nullable=False),
        pa.field("C", pa.int32(), nullable=False),
        pa.field("T", pa.int32(), nullable=False),
        pa.field("duration", pa.float64(), nullable=False),  # seconds covered by the T positions
        pa.field("fps", pa.float64(), nullable=False),
        pa.field("num_frames", pa.int64(), nullable=False),
        pa.field("num_snippets", pa.int32(), nullable=False),  # snippets before rescaling to T
        pa.field("extractor", pa.string(), nullable=False),  # recognizer name
        pa.field("extractor_checkpoint", pa.string(), nullable=False),  # URI or "random"
    ]
)

ERRORS_SCHEMA = pa.schema(
    [
        pa.field(VIDEO_ID, pa.string(), nullable=False),
        pa.field(URI, pa.string(), nullable=False),
        pa.field(
            "stage", pa.string(), nullable=False
        ),  # list | decode | features | localize | write
        pa.field("error_type", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
    ]
)


def duckdb_command(sql: str) -> str:
    """A shell command that runs ``sql`` with DuckDB's Python package (which has no ``duckdb``
    executable) in this project's environment and prints the result, e.g. for job summaries.

    ``sql`` must not contain double quotes (single-quoted SQL literals are fine).
    """
    if '"' in sql:
        raise ValueError("the SQL of a printed query must not contain double quotes")
    return f'python -c "import duckdb; duckdb.sql(\\"{sql}\\").show()"'
