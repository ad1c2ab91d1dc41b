"""The one storage layer: every input and output is a URI opened through fsspec.

Supported: local paths, ``file://``, ``s3://`` (s3fs), ``memory://`` and anything else fsspec
knows (``https://`` for reading checkpoints). S3 credentials come from the standard AWS
environment variables and config files; an S3-compatible endpoint (MinIO, moto) from
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` or :func:`set_s3_endpoint`. Nothing here logs or
writes credentials.

Writes are atomic for readers: local files are written to a hidden temporary name in the same
directory and renamed; object stores publish an object only when its upload completes.

Inputs are read either whole (:func:`local_path`: a local file, downloaded first when remote)
or streamed (:func:`open_input`: a seekable file object reading ranges of the object, with
read-ahead in background threads, so a decoder starts on the first blocks while the next ones
download).
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import logging
import os
import posixpath
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

log = logging.getLogger(__name__)

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


class InputReadError(OSError):
    """A streamed input's range read kept failing or came back short: what a reader decoded
    from it may miss data, so it must not be used (the input is left for a later run)."""


@contextlib.contextmanager
def open_input(
    uri: str,
    *,
    block_size: int = 4 * 2**20,
    readahead: int = 4,
    attempts: int = 4,
    backoff_s: float = 0.5,
) -> Iterator[StreamedInput]:
    """A seekable, read-only file object over the object at ``uri`` that reads it in ranges
    (see :class:`StreamedInput`); closed on exit.

    Raises:
        FileNotFoundError: no such object.
        OSError (or the store client's own errors): its size could not be read.
    """
    fs, path = filesystem(uri)
    size = int(fs.size(path))  # a HEAD: FileNotFoundError when absent
    source = StreamedInput(uri, fs, path, size, block_size, readahead, attempts, backoff_s)
    try:
        yield source
    finally:
        source.close()


class StreamedInput(io.RawIOBase):
    """A remote object read as a file: blocks of ``block_size`` bytes fetched with range reads,
    the next ``readahead`` blocks in background threads while the reader works on the current
    one (a block that was not fetched ahead comes alone first), the most recently used ones
    kept for seeks back. Memory: at most ``readahead + 2`` blocks.

    A block read that fails (or returns fewer bytes than asked) is retried ``attempts`` times
    with exponential backoff from ``backoff_s``; when it keeps failing, :meth:`read` raises
    :class:`InputReadError` and :attr:`error` keeps it, so a reader that swallows read errors
    (FFmpeg may take one for the end of the file) can still tell a damaged read from a short
    file.
    """

    def __init__(
        self,
        uri: str,
        fs: fsspec.AbstractFileSystem,
        path: str,
        size: int,
        block_size: int,
        readahead: int,
        attempts: int,
        backoff_s: float,
    ) -> None:
        super().__init__()
        if block_size < 1 or readahead < 0 or attempts < 1:
            raise ValueError(f"bad stream settings: {block_size=}, {readahead=}, {attempts=}")
        self.uri, self.size, self.error = uri, size, None
        self._fs, self._path = fs, path
        self._block_size, self._readahead = block_size, readahead
        self._attempts, self._backoff_s = attempts, backoff_s
        self._num_blocks = -(-size // block_size)
        self._pos = 0
        self._blocks: collections.OrderedDict[int, Future[bytes]] = collections.OrderedDict()
        self._closing = threading.Event()
        self._pool = ThreadPoolExecutor(max(1, readahead), thread_name_prefix="input-read")

    @property
    def name(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"StreamedInput({self.uri!r})"

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}.get(whence)
        if base is None:
            raise ValueError(f"unsupported whence {whence}")
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, n: int = -1) -> bytes:
        if self.closed:
            raise ValueError("read of a closed StreamedInput")
        end = self.size if n is None or n < 0 else min(self.size, self._pos + n)
        parts = []
        while self._pos < end:
            index, offset = divmod(self._pos, self._block_size)
            try:
                block = self._block(index)
            except InputReadError as err:
                self.error = self.error or err
                raise
            part = block[offset : offset + end - self._pos]
            parts.append(part)
            self._pos += len(part)
        return b"".join(parts)

    def close(self) -> None:
        if not self.closed:
            self._closing.set()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._blocks.clear()
        super().close()

    def _block(self, index: int) -> bytes:
        """Block ``index``'s bytes; schedules the ``readahead`` blocks after it and drops the
        least recently used beyond ``readahead + 2`` blocks.

        A block that was not fetched ahead (the first, or after a seek) is fetched alone
        before more are asked for, so that it does not share the bandwidth with blocks the
        reader does not need yet. Blocks fetched ahead stay through a seek elsewhere and back
        (an MP4 whose index is at its end is read at the start, the end, then the start).
        """
        if index not in self._blocks:
            self._blocks[index] = self._pool.submit(self._fetch, index)
            self._blocks[index].result()
        for i in range(index, min(self._num_blocks, index + 1 + self._readahead)):
            if i not in self._blocks:
                self._blocks[i] = self._pool.submit(self._fetch, i)
            self._blocks.move_to_end(i)  # the blocks behind the reader go first
        while len(self._blocks) > self._readahead + 2:
            oldest = next(iter(self._blocks))
            self._blocks.pop(oldest).cancel()
        return self._blocks[index].result()

    def _fetch(self, index: int) -> bytes:
        """One block by a range read, retried with backoff (runs in a pool thread)."""
        start = index * self._block_size
        stop = min(self.size, start + self._block_size)
        for attempt in range(self._attempts):
            try:
                data = self._fs.cat_file(self._path, start=start, end=stop)
                if len(data) != stop - start:
                    raise OSError(f"short read: {len(data)} of {stop - start} bytes")
                return data
            except FileNotFoundError as err:  # removed while being read: no point retrying
                raise InputReadError(f"{self.uri} disappeared while being read: {err}") from err
            except Exception as err:  # noqa: BLE001  (s3fs, botocore and aiohttp raise many kinds)
                if attempt == self._attempts - 1 or self._closing.is_set():  # closed: quietly
                    raise InputReadError(
                        f"reading bytes {start}-{stop} of {self.uri} failed "
                        f"{attempt + 1} times: {err}"
                    ) from err
                log.warning("reading bytes %d-%d of %s failed (%s); retrying", start, stop,
                            self.uri, err)  # fmt: skip
                self._closing.wait(self._backoff_s * 2**attempt)
        raise AssertionError("unreachable")


def pyarrow_filesystem(uri: str):
    """A ``pyarrow.fs.FileSystem`` and path for ``uri`` (for pyarrow.dataset and Ray Data)."""
    import pyarrow.fs as pafs

    if is_local(uri):
        return pafs.LocalFileSystem(), os.path.abspath(strip_protocol(uri))
    fs, path = filesystem(uri)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
