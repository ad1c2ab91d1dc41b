"""What an output holds: the drivers' index of committed videos (``_index/<run>/``), read at
start-up without one object per committed batch, and retractions (``--retry-failed``).

Layout::

    _index/<run>/part-<seq>.parquet   video_id, batch_id, ok: the driver's log, every half minute
    _index/<run>/complete             the log lists every batch of the run (it ended normally)
    _index/<run>/retracted-<t>.parquet (.applied)   error rows taken back, and when applied

Start-up reads the index files (a few per run), plus the markers of runs whose index is not
complete (a killed run's batches after its last index write).
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import logging
import posixpath
import time
from collections.abc import Mapping
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core import storage
from core.io.commits import COMMITS_DIR, _claim_uri, parquet_bytes, part_uri

log = logging.getLogger(__name__)

INDEX_DIR = "_index"
_IO_THREADS = 16
INDEX_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("ok", pa.bool_(), nullable=False),  # False: the video has only an error row
    ]
)


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
