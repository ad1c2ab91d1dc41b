"""Batch commits: how a run writes Parquet tables so that reruns add no duplicates.

Layout under a run's output URI::

    <table>/run_id=<run>/part-<batch>.parquet   one file per table per committed batch
    _commits/<batch>.json                       the batch's video ids and files: the commit
    _runs/<run>/record.json, config.py          one record per run

A batch is written table by table, each file atomically (see :func:`core.storage.write_bytes`),
then committed by its marker. A video is done when a commit lists it. A run killed between a
batch's files and its marker leaves orphans: the next run over the same output deletes every
data file whose batch has no marker before it starts (:func:`remove_orphans`), then skips the
videos that commits list. So no reader sees a half-written file, and a resumed run adds each
video exactly once.
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
import re

import pyarrow as pa
import pyarrow.parquet as pq

from core import storage

log = logging.getLogger(__name__)

COMMITS_DIR = "_commits"
RUNS_DIR = "_runs"
PARTITION_KEY = "run_id"
_PART_RE = re.compile(r"part-([0-9a-f]{32})\.parquet$")


def table_uri(output_uri: str, table: str) -> str:
    return storage.join(output_uri, table)


def part_uri(output_uri: str, table: str, run_id: str, batch_id: str) -> str:
    return storage.join(output_uri, table, f"{PARTITION_KEY}={run_id}", f"part-{batch_id}.parquet")


def _commit_uri(output_uri: str, batch_id: str) -> str:
    return storage.join(output_uri, COMMITS_DIR, f"{batch_id}.json")


def read_commits(output_uri: str) -> list[dict]:
    """Every commit marker under the output (empty when the output is new)."""
    base = storage.join(output_uri, COMMITS_DIR)
    if not storage.exists(base):
        return []
    return [json.loads(storage.read_bytes(u)) for u in storage.list_files(base, (".json",))]


def committed_video_ids(output_uri: str) -> set[str]:
    return {vid for c in read_commits(output_uri) for vid in c["video_ids"]}


def remove_orphans(output_uri: str, tables: tuple[str, ...]) -> list[str]:
    """Deletes data files that no commit marker covers (left by a killed run)."""
    committed = {c["batch_id"] for c in read_commits(output_uri)}
    removed = []
    for table in tables:
        base = table_uri(output_uri, table)
        if not storage.exists(base):
            continue
        for uri in storage.list_files(base, (".parquet",)):
            match = _PART_RE.search(uri)
            if match and match.group(1) not in committed:
                storage.remove(uri)
                removed.append(uri)
    if removed:
        log.warning("removed %d uncommitted file(s) left by an interrupted run", len(removed))
    return removed


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def commit_batch(
    output_uri: str,
    run_id: str,
    batch_id: str,
    tables: dict[str, pa.Table],
    video_ids: list[str],
) -> dict:
    """Writes one batch's tables, then its commit marker. Returns the marker."""
    files = {}
    for name, table in tables.items():
        uri = part_uri(output_uri, name, run_id, batch_id)
        storage.write_bytes(uri, parquet_bytes(table))
        files[name] = posixpath.relpath(uri.replace("\\", "/"), output_uri.replace("\\", "/"))
    marker = {
        "batch_id": batch_id,
        "run_id": run_id,
        "video_ids": sorted(video_ids),
        "rows": {name: t.num_rows for name, t in tables.items()},
        "files": files,
    }
    storage.write_json(_commit_uri(output_uri, batch_id), marker)
    return marker


def read_table(output_uri: str, table: str, columns: list[str] | None = None) -> pa.Table:
    """Reads a hive-partitioned table written by :func:`commit_batch` (all runs)."""
    import pyarrow.dataset as ds

    fs, path = storage.pyarrow_filesystem(table_uri(output_uri, table))
    dataset = ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
    return dataset.to_table(columns=columns)
