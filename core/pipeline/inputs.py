"""What a run reads: the list of videos, each with a stable, unique, path-safe ``video_id``.

An input is a local directory or ``s3://`` prefix (searched recursively by video extension),
a glob (``s3://bucket/cams/*/2026-*.mp4``), or a manifest (``.csv`` or ``.parquet`` with a
``uri`` column and an optional ``video_id`` column).
"""

from __future__ import annotations

import dataclasses
import io
import os
import posixpath

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core import storage

MANIFEST_EXTENSIONS = (".csv", ".parquet")
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_ESCAPE = "~"


@dataclasses.dataclass(frozen=True)
class VideoInput:
    video_id: str
    uri: str


class InputError(ValueError):
    """The input cannot be listed or read: a job-level failure."""


def encode_id(name: str) -> str:
    """A video's name as an id that is safe in file names, object keys and SQL literals.

    Names made of ``[A-Za-z0-9_.-]`` that do not start with a dot stay exactly as they are
    (ActivityNet's ``v_xxxxxxxxxxx``, including ``-`` and a trailing ``_``); every other byte of
    the name's UTF-8 is written ``~XX`` (hex), ``~`` itself included, so the encoding is
    reversible (:func:`decode_id`) and two names never share an id.
    """
    out = []
    for i, ch in enumerate(name):
        if ch in _SAFE and not (i == 0 and ch == "."):
            out.append(ch)
        else:
            out.extend(f"{_ESCAPE}{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def decode_id(video_id: str) -> str:
    """The name that :func:`encode_id` made ``video_id`` from."""
    raw = bytearray()
    i = 0
    while i < len(video_id):
        if video_id[i] == _ESCAPE:
            raw.append(int(video_id[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(video_id[i].encode("ascii"))
            i += 1
    return raw.decode("utf-8")


def id_from_uri(uri: str) -> str:
    """The id of a video listed without one: its file name without the extension, encoded."""
    stem = posixpath.splitext(posixpath.basename(uri.rstrip("/")))[0]
    return encode_id(stem or posixpath.basename(uri.rstrip("/")))


def _check_unique(videos: list[VideoInput]) -> None:
    """Two inputs with one id would overwrite each other's results: a job-level error."""
    seen: dict[str, str] = {}
    for v in videos:
        other = seen.setdefault(v.video_id, v.uri)
        if other != v.uri:
            raise InputError(
                f"two inputs have the video id {v.video_id!r}: {other} and {v.uri}; ids come "
                "from file names, so give a manifest (.csv or .parquet with 'uri' and "
                "'video_id' columns) that names each video uniquely"
            )


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
    """Lists the videos of a run, in a stable order, each with its id.

    A video's id depends on the video alone (the manifest's ``video_id``, else its file name;
    see :func:`encode_id`), never on what else is in the input, so a rerun over a grown corpus
    skips exactly the videos already done.

    Raises:
        InputError: the input does not exist, holds no video, a manifest lacks ``uri``, or
            two inputs would get the same id.
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
                encode_id(str(v)) if v else id_from_uri(u) for v, u in zip(given, uris, strict=True)
            ]
        else:
            ids = [id_from_uri(u) for u in uris]
    else:
        try:
            uris = storage.list_files(input_uri, storage.VIDEO_EXTENSIONS)
        except FileNotFoundError as e:
            raise InputError(f"input not found: {input_uri}") from e
        ids = [id_from_uri(u) for u in uris]
    if not uris:
        raise InputError(f"no videos found at {input_uri} (extensions: {storage.VIDEO_EXTENSIONS})")
    videos = [VideoInput(v, u) for v, u in zip(ids, uris, strict=True)]
    _check_unique(videos)
    return videos
