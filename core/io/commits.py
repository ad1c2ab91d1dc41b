"""Exactly-once batch commits of Parquet tables under one output URI.

Each video's rows appear once in each table, whatever happens to the runs writing them: a run
killed and resumed, a Ray task retried with the same or another grouping of videos, two runs
over the same output at once, a node lost mid-run. Readers list the table folders with any
Parquet reader and see only committed rows.

Layout under an output URI::

    <table>/part-<batch>.parquet                the published data (what readers read)
    _claims/<video_id>.json                     who may publish the video: created once, ever
    _staging/<run>/<batch>/                     a batch on its way: intent.json, the tables,
                                                manifest.json (the commit point)
    _commits/<run>/<batch>.json                 a finished batch: its videos and files
    _index/<run>/part-<seq>.parquet, complete   the driver's log of finished videos
    _runs/<run>/record.json, config.py, lease.json

A batch commits in five steps (:func:`commit_batch`):

1. ``intent.json`` lists the batch's videos;
2. each video is *claimed* by creating ``_claims/<video_id>.json`` exclusively
   (:func:`core.storage.create_exclusive`: ``link`` locally, a conditional PUT on S3). A
   video claimed by another batch (another run's, or an earlier attempt of this run grouped
   differently) is dropped from this batch: its rows come from the claimant;
3. the tables, without dropped videos, are staged, then ``manifest.json``: from here on the
   batch is committed and recovery only rolls it forward;
4. each table's file is published (skipped when it has no rows), then ``_commits/<batch>``;
5. the staging folder is deleted.

Batch ids are a hash of the run and the batch's video ids, so a retried task with the same
videos repeats the same steps over the same names (every step is idempotent).

Recovery (:func:`recover`) handles batches whose writer died: their run's lease
(``lease.json``, renewed by the driver) has expired, or its process is gone. A batch with a
manifest is rolled forward; one without is rolled back (its claims are released, so the next
run processes its videos). A run also recovers its own dead attempts after its pass.

Start-up reads the runs' index files (a few per run), plus the markers of runs whose index is
not marked complete (a killed run's batches after its last index write), never one object per
committed batch of a finished run.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import io
import json
import logging
import posixpath

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core import storage
from core.io.leases import run_is_alive

log = logging.getLogger(__name__)

CLAIMS_DIR = "_claims"
STAGING_DIR = "_staging"
COMMITS_DIR = "_commits"
_IO_THREADS = 16


def table_uri(output_uri: str, table: str) -> str:
    return storage.join(output_uri, table)


def part_uri(output_uri: str, table: str, batch_id: str) -> str:
    return storage.join(output_uri, table, f"part-{batch_id}.parquet")


def batch_id_of(run_id: str, video_ids: list[str]) -> str:
    """The deterministic id of a batch: the same run and videos give the same id."""
    text = run_id + "\n" + "\n".join(sorted(video_ids))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


# ----------------------------------------------------------------------------- committing


@dataclasses.dataclass(frozen=True)
class CommitResult:
    batch_id: str
    committed: list[str]
    """Videos whose rows this batch published."""
    dropped: list[str]
    """Videos claimed by another batch (their rows are that batch's)."""


def _claim_uri(output_uri: str, video_id: str) -> str:
    return storage.join(output_uri, CLAIMS_DIR, f"{video_id}.json")


def _staging_uri(output_uri: str, run_id: str, batch_id: str, name: str = "") -> str:
    parts = [STAGING_DIR, run_id, batch_id] + ([name] if name else [])
    return storage.join(output_uri, *parts)


def _claim(output_uri: str, run_id: str, batch_id: str, video_id: str) -> bool:
    """True when this batch holds the video's claim (new, or its own from an earlier try)."""
    uri = _claim_uri(output_uri, video_id)
    body = json.dumps({"batch_id": batch_id, "run_id": run_id}).encode()
    if storage.create_exclusive(uri, body):
        return True
    return storage.read_json(uri).get("batch_id") == batch_id


def commit_batch(
    output_uri: str,
    run_id: str,
    batch_id: str | None,
    tables: dict[str, pa.Table],
    video_ids: list[str],
) -> CommitResult:
    """Commits one batch's tables exactly once per video (see the module's steps).

    Args:
        output_uri: the output's root.
        run_id: the run writing the batch.
        batch_id: None for the deterministic :func:`batch_id_of` (what retries need).
        tables: table name → rows; every table has a ``video_id`` column.
        video_ids: the batch's videos (some may have rows in no table, e.g. none at all).

    Returns:
        Which videos this batch committed and which it left to the batches that claim them.
    """
    batch_id = batch_id or batch_id_of(run_id, video_ids)
    storage.write_json(_staging_uri(output_uri, run_id, batch_id, "intent.json"), video_ids)
    with cf.ThreadPoolExecutor(_IO_THREADS) as pool:
        held = list(pool.map(lambda v: _claim(output_uri, run_id, batch_id, v), video_ids))
    committed = [v for v, ok in zip(video_ids, held, strict=True) if ok]
    dropped = [v for v, ok in zip(video_ids, held, strict=True) if not ok]
    if dropped:
        log.info("batch %s: %d videos are claimed by other batches", batch_id[:8], len(dropped))
        keep = pa.array(committed, pa.string())
        tables = {n: t.filter(pc.is_in(t["video_id"], keep)) for n, t in tables.items()}
    files = {}
    for name, table in tables.items():
        if table.num_rows:  # no empty files: readers would list them for nothing
            storage.write_bytes(_staging_uri(output_uri, run_id, batch_id, f"{name}.parquet"),
                                parquet_bytes(table))  # fmt: skip
            files[name] = posixpath.join(name, f"part-{batch_id}.parquet")
    failed = _without_features(tables)
    manifest = {
        "batch_id": batch_id,
        "run_id": run_id,
        "video_ids": sorted(committed),
        "failed": failed,
        "rows": {name: t.num_rows for name, t in tables.items()},
        "files": files,
    }
    storage.write_json(_staging_uri(output_uri, run_id, batch_id, "manifest.json"), manifest)
    _publish(output_uri, manifest)
    return CommitResult(batch_id, committed, dropped)


def _without_features(tables: dict[str, pa.Table]) -> list[str]:
    """Videos with an error row and no features row: failed for good (not merely damaged)."""
    if "errors" not in tables:
        return []
    errors = set(tables["errors"].column("video_id").to_pylist())
    if "features" in tables:
        errors -= set(tables["features"].column("video_id").to_pylist())
    return sorted(errors)


def _publish(output_uri: str, manifest: dict) -> None:
    """Steps 4 and 5: staged tables into the table folders, the marker, staging removed."""
    run_id, batch_id = manifest["run_id"], manifest["batch_id"]
    for name, rel in manifest["files"].items():
        staged = _staging_uri(output_uri, run_id, batch_id, f"{name}.parquet")
        final = storage.join(output_uri, rel)
        if storage.exists(staged) or not storage.exists(final):  # another recoverer was first
            storage.copy(staged, final)
    storage.write_json(storage.join(output_uri, COMMITS_DIR, run_id, f"{batch_id}.json"), manifest)
    storage.remove(_staging_uri(output_uri, run_id, batch_id), recursive=True)


# ----------------------------------------------------------------------------- recovery


@dataclasses.dataclass
class Recovery:
    rolled_forward: int = 0
    rolled_back: int = 0
    released_claims: int = 0
    live_runs: list[str] = dataclasses.field(default_factory=list)


def recover(output_uri: str, own_run: str | None = None) -> Recovery:
    """Finishes or undoes the staged batches of dead runs (and of ``own_run``, whose tasks
    must all have ended: the driver calls this after its pass)."""
    out = Recovery()
    base = storage.join(output_uri, STAGING_DIR)
    if not storage.exists(base):
        return out
    for run_id in _child_names(base):
        if run_id != own_run and run_is_alive(output_uri, run_id):
            out.live_runs.append(run_id)
            continue
        for batch_id in _child_names(storage.join(base, run_id)):
            try:
                _recover_batch(output_uri, run_id, batch_id, out)
            except FileNotFoundError:  # another run recovered the batch at the same time
                log.info("batch %s of run %s was recovered concurrently", batch_id, run_id)
        storage.remove(storage.join(base, run_id), recursive=True)
    if out.rolled_forward or out.rolled_back:
        log.warning("recovered interrupted batches: %d finished, %d undone (%d claims released)",
                    out.rolled_forward, out.rolled_back, out.released_claims)  # fmt: skip
    return out


def _recover_batch(output_uri: str, run_id: str, batch_id: str, out: Recovery) -> None:
    manifest_uri = _staging_uri(output_uri, run_id, batch_id, "manifest.json")
    if storage.exists(manifest_uri):
        _publish(output_uri, storage.read_json(manifest_uri))
        out.rolled_forward += 1
        return
    intent_uri = _staging_uri(output_uri, run_id, batch_id, "intent.json")
    video_ids = storage.read_json(intent_uri) if storage.exists(intent_uri) else []
    for video_id in video_ids:
        uri = _claim_uri(output_uri, video_id)
        if storage.exists(uri) and storage.read_json(uri).get("batch_id") == batch_id:
            storage.remove(uri)
            out.released_claims += 1
    storage.remove(_staging_uri(output_uri, run_id, batch_id), recursive=True)
    out.rolled_back += 1


def _child_names(uri: str) -> list[str]:
    fs, path = storage.filesystem(uri)
    names = [posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)]
    return sorted(n for n in names if not n.startswith("."))


def read_table(output_uri: str, table: str, columns: list[str] | None = None) -> pa.Table:
    """Reads a hive-partitioned table written by :func:`commit_batch` (all runs)."""
    import pyarrow.dataset as ds

    fs, path = storage.pyarrow_filesystem(table_uri(output_uri, table))
    dataset = ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
    return dataset.to_table(columns=columns)
