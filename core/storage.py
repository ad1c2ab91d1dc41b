"""The one storage layer: every input and output is a URI opened through fsspec.

Supported: local paths, ``file://``, ``s3://`` (s3fs), ``memory://`` and anything else fsspec
knows (``https://`` for reading checkpoints). S3 credentials come from the standard AWS
environment variables and config files; an S3-compatible endpoint (MinIO, moto) from
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` or :func:`set_s3_endpoint`. Nothing here logs or
writes credentials.

Writes are atomic for readers: local files are written to a hidden temporary name in the same
directory and renamed; object stores publish an object only when its upload completes.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv")

_ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def set_s3_endpoint(endpoint_url: str | None) -> None:
    """Points every S3 client of this process (and of Ray workers that inherit the
    environment) at an S3-compatible endpoint. ``None`` or ``""`` leaves the AWS default."""
    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL_S3"] = endpoint_url


def s3_endpoint() -> str | None:
    """The S3 endpoint in force, if one was set (environment or :func:`set_s3_endpoint`)."""
    for var in _ENDPOINT_VARS:
        if os.environ.get(var):
            return os.environ[var]
    return None


def protocol(uri: str) -> str:
    """The URI's scheme: ``file`` for local paths."""
    if "://" not in uri:
        return "file"
    return uri.split("://", 1)[0].lower()


def is_local(uri: str) -> bool:
    return protocol(uri) in ("file", "local")


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for ``uri`` and the path inside it."""
    proto = protocol(uri)
    if proto in ("file", "local"):
        return LocalFileSystem(), os.path.abspath(strip_protocol(uri))
    options: dict[str, Any] = {}
    if proto in ("s3", "s3a"):
        endpoint = s3_endpoint()
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
        proto = "s3"
    fs = fsspec.filesystem(proto, **options)
    return fs, fs._strip_protocol(uri)


def strip_protocol(uri: str) -> str:
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if uri.startswith("local://"):
        return uri[len("local://") :]
    return uri


def join(base: str, *parts: str) -> str:
    """Joins path parts onto a URI with ``/`` whatever the scheme."""
    if is_local(base):
        return os.path.join(strip_protocol(base), *parts)
    return posixpath.join(base.rstrip("/"), *parts)


def unstrip(uri_like: str, path: str) -> str:
    """Puts the scheme of ``uri_like`` back on a path that a filesystem returned."""
    proto = protocol(uri_like)
    if proto in ("file", "local"):
        return path
    return f"{proto}://{path.lstrip('/')}" if proto != "memory" else f"memory://{path}"


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.exists(path)


def makedirs(uri: str) -> None:
    fs, path = filesystem(uri)
    if is_local(uri):
        os.makedirs(path, exist_ok=True)
    else:
        with contextlib.suppress(FileExistsError):
            fs.makedirs(path, exist_ok=True)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    return fs.cat_file(path)


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri))


def write_bytes(uri: str, data: bytes) -> None:
    """Writes a whole file so that no reader ever sees it half written."""
    fs, path = filesystem(uri)
    if is_local(uri):
        with _local_temp(path, data) as tmp:
            os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)


@contextlib.contextmanager
def _local_temp(path: str, data: bytes) -> Iterator[str]:
    """``data`` in a hidden temporary file next to ``path`` (removed at exit if still there)."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; outputs are read by other users/workers
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def create_exclusive(uri: str, data: bytes) -> bool:
    """Creates the file only if it does not exist yet, atomically, whole: exactly one of any
    number of concurrent callers (threads, processes, machines) gets ``True``.

    Local files: a temporary file hard-linked into place (``link`` fails if the name exists,
    like ``O_EXCL``, and readers never see a partial file). S3: a conditional PUT
    (``If-None-Match: *``). ``memory://`` (tests): a check and a write under one process-wide
    lock, exclusive within the process that holds the filesystem.
    """
    fs, path = filesystem(uri)
    if is_local(uri):
        with _local_temp(path, data) as tmp:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            return True
    if protocol(uri) == "memory":
        with _MEMORY_LOCK:
            if fs.exists(path):
                return False
            fs.pipe_file(path, data)
            return True
    try:
        fs.pipe_file(path, data, mode="create")
        return True
    except FileExistsError:
        return False
    except OSError as err:  # s3fs maps 412 Precondition Failed to an OSError subclass
        if "PreconditionFailed" in str(err) or "412" in str(err):
            return False
        raise


_MEMORY_LOCK = threading.Lock()


def copy(src: str, dst: str) -> None:
    """Copies a file to another URI on the same store, atomically for readers of ``dst``."""
    if is_local(dst):
        write_bytes(dst, read_bytes(src))
        return
    fs, src_path = filesystem(src)
    _, dst_path = filesystem(dst)
    fs.copy(src_path, dst_path)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def write_json(uri: str, obj: Any) -> None:
    write_text(uri, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def put_file(local_path: str, uri: str) -> None:
    """Copies a local file to a URI atomically (see :func:`write_bytes`)."""
    if is_local(uri):
        with open(local_path, "rb") as f:
            write_bytes(uri, f.read())
        return
    fs, path = filesystem(uri)
    fs.put_file(local_path, path)


def remove(uri: str, recursive: bool = False) -> None:
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)


def list_files(uri: str, extensions: Iterable[str] | None = None) -> list[str]:
    """Every file under ``uri`` (recursive), sorted, optionally filtered by extension
    (case-insensitive). Hidden files (names starting with ``.``) are skipped. A glob
    pattern (``*``, ``?``, ``[``) is expanded instead."""
    fs, path = filesystem(uri)
    exts = tuple(e.lower() for e in extensions) if extensions else None
    if any(ch in path for ch in "*?["):
        paths = fs.glob(path)
        paths = [p for p in paths if fs.isfile(p)]
    else:
        if not fs.exists(path):
            raise FileNotFoundError(f"no such file or directory: {uri}")
        if fs.isfile(path):
            paths = [path]
        else:
            paths = fs.find(path)
    out = []
    for p in paths:
        name = posixpath.basename(p)
        if name.startswith("."):
            continue
        if exts and not name.lower().endswith(exts):
            continue
        out.append(unstrip(uri, p))
    return sorted(out)


@contextlib.contextmanager
def local_path(uri: str, suffix: str = "") -> Iterator[str]:
    """A local file path holding the URI's content: the file itself when local, else a
    temporary download removed on exit."""
    if is_local(uri):
        yield strip_protocol(uri)
        return
    fs, path = filesystem(uri)
    with tempfile.TemporaryDirectory(prefix="uri-") as tmp:
        dest = os.path.join(tmp, uuid.uuid4().hex + (suffix or posixpath.splitext(path)[1]))
        fs.get_file(path, dest)
        yield dest


def pyarrow_filesystem(uri: str):
    """A ``pyarrow.fs.FileSystem`` and path for ``uri`` (for pyarrow.dataset and Ray Data)."""
    import pyarrow.fs as pafs

    if is_local(uri):
        return pafs.LocalFileSystem(), os.path.abspath(strip_protocol(uri))
    fs, path = filesystem(uri)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
