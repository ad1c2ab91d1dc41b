"""Checkpoint files through :mod:`core.storage`: local paths, ``s3://``, ``https://``, ``memory://``.

Loading is safe by default: ``torch.load(weights_only=True)`` unpickles only tensors and plain
containers. A checkpoint that needs arbitrary unpickling (MMEngine's, whose ``message_hub``
holds ``HistoryBuffer`` objects; anything holding custom classes) is refused with
:class:`UnsafeCheckpointError` unless the caller opts in with ``allow_pickle=True``: unpickling
runs code from the file, so only opt in for files you trust.

Every load returns the sha256 of the bytes read, so that outputs can name the exact model.
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import re
from collections.abc import Mapping
from typing import Any

import torch

from core import storage

logger = logging.getLogger(__name__)

_DDP_PREFIX = "module."
# What torch's weights-only unpickler says when a file holds more than tensors and containers.
_NEEDS_PICKLE = re.compile(
    r"Unsupported global|Unsupported class|Can only create new object|unrecognized function"
)


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint needs arbitrary unpickling and the caller did not allow it."""


def save_checkpoint(state: Mapping[str, Any], uri: str) -> str:
    """Serialises ``state`` with ``torch.save`` and writes it atomically to ``uri``.

    Returns:
        The sha256 (hex) of the bytes written.
    """
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    data = buffer.getvalue()
    storage.write_bytes(uri, data)
    return hashlib.sha256(data).hexdigest()


def load_checkpoint(
    uri: str, *, map_location: str | torch.device = "cpu", allow_pickle: bool = False
) -> tuple[Any, str]:
    """Reads and deserialises a checkpoint.

    Args:
        uri: where the checkpoint is.
        map_location: passed to ``torch.load``.
        allow_pickle: fall back to full unpickling when the file holds more than tensors and
            plain containers. Only for files you trust.

    Returns:
        ``(obj, sha256)``: the deserialised object and the sha256 (hex) of the bytes read.

    Raises:
        UnsafeCheckpointError: the file needs unpickling and ``allow_pickle`` is False.
    """
    data = storage.read_bytes(uri)
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        obj = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if not _NEEDS_PICKLE.search(str(err)):
            raise  # a corrupt or truncated file, not an unsafe one
        if not allow_pickle:
            raise UnsafeCheckpointError(_unsafe_message(uri, err)) from err
        logger.warning("Unpickling checkpoint %s (sha256 %s): allow_pickle is set", uri, sha256)
        obj = torch.load(io.BytesIO(data), map_location=map_location, weights_only=False)
    return obj, sha256


def _unsafe_message(uri: str, err: Exception) -> str:
    match = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    blocked = f" (it needs {match.group(1)})" if match else ""
    return (
        f"checkpoint {uri} holds objects that only full unpickling can restore{blocked}, "
        "for example an MMEngine checkpoint's message_hub, and unpickling runs code from the "
        "file. If you trust the file, opt in: load_checkpoint(..., allow_pickle=True), or in "
        "the jobs `--cfg-options checkpoint.allow_pickle=True`."
    )


def unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The model state dict inside a loaded checkpoint.

    Accepts a bare state dict, MMEngine's ``{'state_dict': ...}`` and this project's
    ``{'model': ..., 'meta': ...}``. A ``module.`` prefix (from DistributedDataParallel) is
    removed when every key has it.

    Raises:
        ValueError: no state dict found.
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"a checkpoint must be a dict, got {type(obj).__name__}")
    for key in ("state_dict", "model"):
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            "no state dict in checkpoint: expected tensors, 'state_dict' or 'model'; "
            f"top-level keys are {sorted(map(str, obj))[:10]}"
        )
    state = dict(obj)
    if all(k.startswith(_DDP_PREFIX) for k in state):
        state = {k[len(_DDP_PREFIX) :]: v for k, v in state.items()}
    return state


def load_state_dict_from(
    uri: str, *, map_location: str | torch.device = "cpu", allow_pickle: bool = False
) -> tuple[dict[str, torch.Tensor], str]:
    """Loads a checkpoint (see :func:`load_checkpoint`) and returns its model state dict.

    Returns:
        ``(state_dict, sha256)``: the state dict (see :func:`unwrap_state_dict`) and the
        sha256 (hex) of the bytes read.
    """
    obj, sha256 = load_checkpoint(uri, map_location=map_location, allow_pickle=allow_pickle)
    return unwrap_state_dict(obj), sha256


def file_sha256(uri: str | None) -> str:
    """sha256 of a file's bytes, streamed, or ``random`` for none: a checkpoint by content
    (what fingerprints and the tables' model columns record, not its URI)."""
    if not uri:
        return "random"
    digest = hashlib.sha256()
    fs, path = storage.filesystem(uri)
    with fs.open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()
