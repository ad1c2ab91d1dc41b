"""What a run reads: the list of videos, each with a unique, path-safe ``video_id``.

An input is a local directory or ``s3://`` prefix (searched recursively by video extension),
a glob (``s3://bucket/cams/*/2026-*.mp4``), or a manifest (``.csv`` or ``.parquet`` with a
``uri`` column and an optional ``video_id`` column).
"""

from __future__ import annotations

import dataclasses
import io
import os
import posixpath
import re

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core import storage

_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_.-]+")
MANIFEST_EXTENSIONS = (".csv", ".parquet")


@dataclasses.dataclass(frozen=True)
class VideoInput:
    video_id: str
    uri: str


class InputError(ValueError):
    """The input cannot be listed or read: a job-level failure."""


def safe_id(name: str) -> str:
    """A video id made safe for file names and partition values: ``[A-Za-z0-9_.-]`` only,
    no leading dot, at most 200 characters (long names keep a hash suffix)."""
    cleaned = _UNSAFE_RE.sub("_", name).strip("._") or "video"
    if len(cleaned) > 200:
        import hashlib

        cleaned = cleaned[:183] + "-" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return cleaned


def _unique(ids: list[str]) -> list[str]:
    """Makes ids unique by suffixing ``-2``, ``-3``... in input order."""
    seen: dict[str, int] = {}
    taken = set(ids)
    out = []
    for vid in ids:
        if vid not in seen:
            seen[vid] = 1
            out.append(vid)
            continue
        n = seen[vid]
        while True:
            n += 1
            candidate = f"{vid}-{n}"
            if candidate not in taken:
                break
        seen[vid] = n
        taken.add(candidate)
        out.append(candidate)
    return out


def _id_from_uri(uri: str) -> str:
    stem = posixpath.splitext(posixpath.basename(uri.rstrip("/")))[0]
    return safe_id(stem)


def _read_manifest(uri: str) -> pa.Table:
    data = storage.read_bytes(uri)
    if uri.lower().endswith(".parquet"):
        return pq.read_table(io.BytesIO(data))
    return pacsv.read_csv(io.BytesIO(data))


def _resolve(base: str, path: str) -> str:
    """Manifest entries may be relative to the manifest's folder."""
    if "://" in path or os.path.isabs(path):
        return path
    return storage.join(posixpath.dirname(base) if "://" in base else os.path.dirname(base), path)


def list_inputs(input_uri: str) -> list[VideoInput]:
    """Lists the videos of a run, in a stable order, with unique safe ids.

    Raises:
        InputError: the input does not exist, holds no video, or a manifest lacks ``uri``.
    """
    if input_uri.lower().endswith(MANIFEST_EXTENSIONS):
        try:
            table = _read_manifest(input_uri)
        except FileNotFoundError as e:
            raise InputError(f"manifest not found: {input_uri}") from e
        if "uri" not in table.column_names:
            raise InputError(f"manifest {input_uri} has no 'uri' column: {table.column_names}")
        uris = [_resolve(input_uri, str(u)) for u in table.column("uri").to_pylist()]
        if "video_id" in table.column_names:
            given = table.column("video_id").to_pylist()
            ids = [
                safe_id(str(v)) if v else _id_from_uri(u) for v, u in zip(given, uris, strict=True)
            ]
        else:
            ids = [_id_from_uri(u) for u in uris]
    else:
        try:
            uris = storage.list_files(input_uri, storage.VIDEO_EXTENSIONS)
        except FileNotFoundError as e:
            raise InputError(f"input not found: {input_uri}") from e
        ids = [_id_from_uri(u) for u in uris]
    if not uris:
        raise InputError(f"no videos found at {input_uri} (extensions: {storage.VIDEO_EXTENSIONS})")
    return [VideoInput(v, u) for v, u in zip(_unique(ids), uris, strict=True)]
