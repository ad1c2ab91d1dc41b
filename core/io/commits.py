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
import os
import posixpath
import socket
import threading
import time
from collections.abc import Mapping
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core import storage

log = logging.getLogger(__name__)

CLAIMS_DIR = "_claims"
STAGING_DIR = "_staging"
COMMITS_DIR = "_commits"
INDEX_DIR = "_index"
RUNS_DIR = "_runs"
LEASE_TIMEOUT_S = 120.0
"""A run whose lease was not renewed for this long is taken as dead (its process may have
been killed or its node lost)."""
LEASE_RENEW_S = 10.0
_IO_THREADS = 16
INDEX_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("ok", pa.bool_(), nullable=False),  # False: the video has only an error row
    ]
)


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


# ----------------------------------------------------------------------------- runs and leases


class RunLease:
    """The driver's proof of life: ``_runs/<run>/lease.json`` renewed every few seconds."""

    def __init__(self, output_uri: str, run_id: str, renew_s: float = LEASE_RENEW_S) -> None:
        self.uri = storage.join(output_uri, RUNS_DIR, run_id, "lease.json")
        self.run_id, self.renew_s = run_id, renew_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, daemon=True, name="run-lease")

    def __enter__(self) -> RunLease:
        self._write(released=False)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._write(released=True)

    def _write(self, released: bool) -> None:
        lease = {"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
                 "renewed_at": time.time(), "released": released}  # fmt: skip
        storage.write_json(self.uri, lease)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_s):
            try:
                self._write(released=False)
            except Exception:  # noqa: BLE001  (a missed renewal is retried at the next tick)
                log.warning("could not renew the run lease %s", self.uri, exc_info=True)


def run_is_alive(output_uri: str, run_id: str, timeout_s: float = LEASE_TIMEOUT_S) -> bool:
    """Whether the run's driver may still be writing: its lease is unreleased and fresh, and,
    when it runs on this host, its process exists."""
    uri = storage.join(output_uri, RUNS_DIR, run_id, "lease.json")
    if not storage.exists(uri):
        return False
    lease = storage.read_json(uri)
    if lease.get("released"):
        return False
    if lease.get("host") == socket.gethostname() and not _pid_alive(int(lease.get("pid", -1))):
        return False
    return time.time() - float(lease.get("renewed_at", 0)) < timeout_s


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


# ----------------------------------------------------------------------------- what is done


class IndexWriter:
    """The driver's log of finished videos, ``_index/<run>/part-<seq>.parquet``, flushed every
    ``every_s`` seconds and by :meth:`close`, which also marks it ``complete`` (then start-up
    need not look at the run's markers)."""

    def __init__(self, output_uri: str, run_id: str, every_s: float = 30.0) -> None:
        self.output_uri, self.run_id, self.every_s = output_uri, run_id, every_s
        self._rows: list[tuple[str, str, bool]] = []
        self._seq = 0
        self._last = time.monotonic()

    def add(self, video_ids, batch_ids, ok) -> None:
        rows = zip(map(str, video_ids), map(str, batch_ids), map(bool, ok), strict=True)
        self._rows.extend(rows)
        if time.monotonic() - self._last > self.every_s:
            self.flush()

    def flush(self) -> None:
        self._last = time.monotonic()
        if not self._rows:
            return
        vids, batches, ok = zip(*self._rows, strict=True)
        table = pa.table({"video_id": vids, "batch_id": batches, "ok": ok}, schema=INDEX_SCHEMA)
        uri = storage.join(self.output_uri, INDEX_DIR, self.run_id, f"part-{self._seq:06d}.parquet")
        storage.write_bytes(uri, parquet_bytes(table))
        self._seq += 1
        self._rows = []

    def close(self) -> None:
        """Flushes, then marks the index complete: it lists every batch the run committed."""
        self.flush()
        storage.write_text(storage.join(self.output_uri, INDEX_DIR, self.run_id, "complete"), "")


class Committed(NamedTuple):
    ok: bool
    """Whether the video has features (False: only an error row: it failed for good)."""
    batch_id: str


class CommittedVideos(Mapping[str, Committed]):
    """Read-only ``video_id → Committed`` of an output, built without a Python object per
    video (a million videos load in about a second): columns, and a dict from id to row."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table.combine_chunks()
        vids = self._table.column("video_id").to_pylist()
        self._row = dict(zip(vids, range(len(vids)), strict=True))  # the last row of an id wins

    def __getitem__(self, video_id: str) -> Committed:
        row = self._table.slice(self._row[video_id], 1).to_pylist()[0]
        return Committed(row["ok"], row["batch_id"])

    def failed(self) -> dict[str, Committed]:
        """The videos that failed for good (an error row, no features)."""
        ok, batch = self._table["ok"].to_pylist(), self._table["batch_id"].to_pylist()
        return {v: Committed(False, batch[i]) for v, i in self._row.items() if not ok[i]}

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._row

    def __iter__(self):
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)


def committed_videos(output_uri: str) -> CommittedVideos:
    """Every committed video and its batch, minus retracted ones (:func:`retract_failed`).

    Reads the index files, then the markers of runs whose index is not complete (a killed
    run's last batches, and outputs written before indexes existed) that no index lists.
    """
    index = storage.join(output_uri, INDEX_DIR)
    parts, retractions, complete = [], [], set()
    if storage.exists(index):
        files = storage.list_files(index)
        complete = {
            posixpath.basename(posixpath.dirname(u)) for u in files if u.endswith("/complete")
        }
        logs = [u for u in files if u.endswith(".parquet")]
        with cf.ThreadPoolExecutor(_IO_THREADS) as pool:
            tables = list(pool.map(_read_parquet, logs))
        for uri, table in zip(logs, tables, strict=True):
            is_retraction = posixpath.basename(uri).startswith("retracted-")
            (retractions if is_retraction else parts).append(table)
    log_table = pa.concat_tables(parts) if parts else INDEX_SCHEMA.empty_table()
    if retractions:  # rare: only after --retry-failed
        taken = pa.concat_tables([t.select(["video_id", "batch_id"]) for t in retractions])
        keys = pc.binary_join_element_wise(log_table["video_id"], log_table["batch_id"], "\n")
        gone = pc.binary_join_element_wise(taken["video_id"], taken["batch_id"], "\n")
        log_table = log_table.filter(pc.invert(pc.is_in(keys, gone)))
    retracted = set()
    for table in retractions:
        pairs = zip(
            table.column("video_id").to_pylist(), table.column("batch_id").to_pylist(), strict=True
        )
        retracted.update(pairs)
    extra = {"video_id": [], "batch_id": [], "ok": []}
    indexed = set(log_table.column("batch_id").unique().to_pylist())
    for marker in _unindexed_markers(output_uri, complete, indexed):
        with_features = _videos_with_features(output_uri, marker)
        for vid in marker["video_ids"]:
            if (vid, marker["batch_id"]) not in retracted:
                extra["video_id"].append(vid)
                extra["batch_id"].append(marker["batch_id"])
                extra["ok"].append(vid in with_features)
    log_table = pa.concat_tables([log_table, pa.table(extra, schema=INDEX_SCHEMA)])
    return CommittedVideos(log_table)


def _unindexed_markers(output_uri: str, complete: set[str], indexed: set[str]) -> list[dict]:
    """Markers of batches no index lists, from runs whose index is not complete."""
    base = storage.join(output_uri, COMMITS_DIR)
    if not storage.exists(base):
        return []
    fs, path = storage.filesystem(base)
    uris = []
    for entry in fs.ls(path, detail=True):
        name = posixpath.basename(entry["name"].rstrip("/"))
        if entry["type"] == "directory" and name not in complete:
            uris += storage.list_files(storage.join(base, name), (".json",))
        elif entry["type"] == "file" and name.endswith(".json"):  # written before runs had folders
            uris.append(storage.join(base, name))
    uris = [u for u in uris if posixpath.basename(u)[: -len(".json")] not in indexed]
    with cf.ThreadPoolExecutor(_IO_THREADS) as pool:
        return list(pool.map(storage.read_json, uris))


def _read_parquet(uri: str) -> pa.Table:
    return pq.read_table(io.BytesIO(storage.read_bytes(uri)))


def _videos_with_features(output_uri: str, marker: dict) -> set[str]:
    """The marker's videos that have a features row."""
    if "failed" in marker:
        return set(marker["video_ids"]) - set(marker["failed"])
    rel = marker.get("files", {}).get("errors")  # markers written before "failed" existed
    if not rel or not marker.get("rows", {}).get("errors"):
        return set(marker["video_ids"])
    failed = _read_parquet(storage.join(output_uri, rel)).column("video_id").to_pylist()
    return set(marker["video_ids"]) - set(failed)


def committed_video_ids(output_uri: str) -> set[str]:
    """Every video with committed rows (features or an error)."""
    return set(committed_videos(output_uri))


def retract_failed(output_uri: str, run_id: str, failed: dict[str, Committed]) -> int:
    """Takes back the error rows of videos that failed for good, so that a run processes them
    again (``--retry-failed``): each video keeps one row per table.

    The retraction is logged first (``_index/<run>/retracted-*.parquet``, which
    :func:`committed_videos` honours), then applied to the errors files and the claims;
    :func:`apply_retractions` finishes one that a killed run left half applied.
    """
    if not failed:
        return 0
    vids = sorted(failed)
    log_uri = storage.join(output_uri, INDEX_DIR, run_id, f"retracted-{time.time_ns()}.parquet")
    table = pa.table({"video_id": vids, "batch_id": [failed[v].batch_id for v in vids]})
    storage.write_bytes(log_uri, parquet_bytes(table))
    _apply_retraction(output_uri, log_uri)
    return len(vids)


def apply_retractions(output_uri: str) -> None:
    """Applies every logged retraction not yet marked applied (after a killed run)."""
    index = storage.join(output_uri, INDEX_DIR)
    if not storage.exists(index):
        return
    for uri in storage.list_files(index, (".parquet",)):
        if posixpath.basename(uri).startswith("retracted-") and not storage.exists(
            uri + ".applied"
        ):
            _apply_retraction(output_uri, uri)


def _apply_retraction(output_uri: str, log_uri: str) -> None:
    rows = _read_parquet(log_uri).to_pydict()
    by_batch: dict[str, set[str]] = {}
    for vid, batch in zip(rows["video_id"], rows["batch_id"], strict=True):
        by_batch.setdefault(batch, set()).add(vid)
    for batch, vids in by_batch.items():
        uri = part_uri(output_uri, "errors", batch)
        if storage.exists(uri):
            errors = _read_parquet(uri)
            kept = errors.filter(pc.invert(pc.is_in(errors["video_id"], pa.array(sorted(vids)))))
            if kept.num_rows:
                storage.write_bytes(uri, parquet_bytes(kept))
            else:
                storage.remove(uri)
        for vid in vids:
            claim = _claim_uri(output_uri, vid)
            if storage.exists(claim) and storage.read_json(claim).get("batch_id") == batch:
                storage.remove(claim)
    storage.write_text(log_uri + ".applied", "")


def read_table(output_uri: str, table: str, columns: list[str] | None = None) -> pa.Table:
    """Reads a hive-partitioned table written by :func:`commit_batch` (all runs)."""
    import pyarrow.dataset as ds

    fs, path = storage.pyarrow_filesystem(table_uri(output_uri, table))
    dataset = ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
    return dataset.to_table(columns=columns)
