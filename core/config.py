"""Job configs: MMEngine Python files, checked against typed schemas at start.

A config file is read with :class:`mmengine.config.Config` (``_base_`` at most one level deep),
``--cfg-options k=v`` overrides are merged as in MMAction2's tools, and the result is checked
against a dataclass schema: an unknown key, a missing required key or a value of the wrong type
fails at start with :class:`ConfigError`, naming the key and where it came from. The resolved
config is saved next to every run's outputs with :func:`save_resolved`.

Conventions a section may use: ``__post_init__`` raising ``ValueError`` for values that cannot
run together (reported as a ConfigError naming the section), and a ``MOVED`` class variable
mapping a key that moved elsewhere to its new place (the unknown-key error then says where).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import TYPE_CHECKING, Any, TypeVar

from core import storage

if TYPE_CHECKING:  # MMEngine is imported where a file is read, not with the schemas: a Ray
    from mmengine.config import Config  # Train worker unpickles its schemas only (0.2 s)

T = TypeVar("T")


class ConfigError(ValueError):
    """A config that cannot run: the message names the key and the file or option."""


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """Adds ``--config`` and ``--cfg-options`` the way MMAction2's tools spell them."""
    from mmengine.config import DictAction

    parser.add_argument("--config", required=True, help="MMEngine Python config file")
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
        default=None,
        help="override config keys, e.g. model.num_action_classes=5 batch_size=8",
    )


def load(path: str, schema: type[T], cfg_options: dict[str, Any] | None = None) -> tuple[T, Config]:
    """Reads ``path``, checks it, applies overrides, checks again.

    Returns:
        The typed config and the resolved :class:`Config` (for saving).
    """
    from mmengine.config import Config

    try:
        cfg = Config.fromfile(path)
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {path}") from e
    _check_base_depth(path)
    data = _plain(cfg.to_dict())
    source = f"config file {path}"
    _validate(data, schema, "", source)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
        data = _plain(cfg.to_dict())
        source = f"--cfg-options (over {path})"
        _validate(data, schema, "", source)
    return _build(data, schema, "", source), cfg


def build(schema: type[T], data: dict[str, Any], source: str = "settings") -> T:
    """Checks a plain dict against ``schema`` and builds it: the one way any part of the code
    turns settings into a typed section (unknown keys, wrong types and values that the
    section's own ``__post_init__`` rejects are :class:`ConfigError` naming the key)."""
    data = _plain(data)
    _validate(data, schema, "", source)
    return _build(data, schema, "", source)


def save_resolved(cfg: Config, uri: str) -> None:
    """Writes the resolved config as a Python file that :func:`load` can read back."""
    storage.write_text(uri, cfg.pretty_text)


def to_dict(obj: Any) -> dict[str, Any]:
    """A typed config as plain dicts and lists (for run records)."""
    return dataclasses.asdict(obj)


def _check_base_depth(path: str) -> None:
    bases = _bases_of(path)
    for base in bases:
        if _bases_of(base):
            raise ConfigError(
                f"config file {path}: its _base_ {base} has a _base_ of its own; "
                "this project allows one level of inheritance"
            )


def _bases_of(path: str) -> list[str]:
    import ast
    import os

    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_base_" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            names = [value] if isinstance(value, str) else list(value)
            return [os.path.join(os.path.dirname(path), n) for n in names]
    return []


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _validate(value: Any, tp: Any, key: str, source: str) -> None:
    """Raises ConfigError if ``value`` does not fit type ``tp``; ``key`` is its dotted path."""
    where = f"{source}: key '{key}'" if key else source
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a dict of {_type_name(tp)} settings, got {value!r}")
        fields = {f.name: f for f in dataclasses.fields(tp)}
        hints = typing.get_type_hints(tp)
        for name in value:
            if name not in fields:
                full = f"{key}.{name}" if key else name
                known = ", ".join(sorted(fields))
                moved = getattr(tp, "MOVED", {}).get(name)
                hint = f"; it moved to '{moved}'" if moved else ""
                raise ConfigError(
                    f"{source}: unknown key '{full}'{hint} (known keys here: {known})"
                )
        for name, field in fields.items():
            full = f"{key}.{name}" if key else name
            if name not in value:
                if (
                    field.default is dataclasses.MISSING
                    and field.default_factory is dataclasses.MISSING
                ):
                    raise ConfigError(f"{source}: missing required key '{full}'")
                continue
            _validate(value[name], hints[name], full, source)
        return
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            try:
                _validate(value, arg, key, source)
                return
            except ConfigError as e:
                errors.append(str(e))
        names = " or ".join(_type_name(a) for a in args)
        raise ConfigError(f"{where} must be {names}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {list(args)}, got {value!r}")
        return
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where} must be None, got {value!r}")
        return
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        fixed_tuple = origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis)
        if fixed_tuple:
            if len(args) != len(value):
                raise ConfigError(f"{where} must have {len(args)} items, got {value!r}")
            for i, (v, a) in enumerate(zip(value, args, strict=True)):
                _validate(v, a, f"{key}[{i}]", source)
            return
        item = args[0] if args else Any
        for i, v in enumerate(value):
            _validate(v, item, f"{key}[{i}]", source)
        return
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a dict, got {value!r}")
        return
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r}")
        return
    raise TypeError(f"schema type {tp!r} at '{key}' is not supported by core.config")


def _build(value: Any, tp: Any, key: str, source: str) -> Any:
    """Turns checked plain data into the schema's dataclasses (tuples stay lists).

    A section's ``__post_init__`` may reject a combination of values (``ValueError``): that
    becomes a :class:`ConfigError` naming the section and the file or option.
    """
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        kwargs = {
            name: _build(v, hints[name], f"{key}.{name}" if key else name, source)
            for name, v in value.items()
        }
        try:
            return tp(**kwargs)
        except ConfigError:
            raise
        except ValueError as e:
            where = f"{source}: key '{key}'" if key else source
            raise ConfigError(f"{where}: {e}") from e
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return _build(value, arg, key, source)
        return value
    if tp is float and isinstance(value, int):
        return float(value)
    if origin is tuple:
        return tuple(value)
    return value


# ----------------------------------------------------------------------------- shared sections
# Sections that more than one job's schema holds; each is defined here once.


@dataclasses.dataclass
class StorageSection:
    """Where URIs resolve (``storage`` in every job's config)."""

    endpoint_url: str | None = None
    """S3-compatible endpoint (MinIO, ...); None = AWS's default or AWS_ENDPOINT_URL_S3."""
    stream_inputs: bool = True
    """Decode a remote video (S3, ...) while it downloads: range reads of
    ``stream_block_size`` bytes, ``stream_readahead`` blocks fetched ahead in background
    threads (:func:`core.storage.open_input`). False: download each video whole to a
    temporary file first. Local files are always opened in place, and a decoder that needs a
    file path (not PyAV) always gets the whole download."""
    stream_block_size: int = 4 * 2**20
    """Bytes per range read of a streamed input (at least 64 KiB)."""
    stream_readahead: int = 4
    """Blocks of a streamed input fetched ahead of the decoder, in parallel (0 to 64). Memory
    per decoding actor: about ``(stream_readahead + 2) * stream_block_size``."""

    def __post_init__(self) -> None:
        if self.stream_block_size < 64 * 1024:
            raise ValueError(
                f"stream_block_size must be at least 65536 bytes, got {self.stream_block_size}"
            )
        if not 0 <= self.stream_readahead <= 64:
            raise ValueError(f"stream_readahead must be in 0..64, got {self.stream_readahead}")


@dataclasses.dataclass
class CheckpointLoadSection:
    """How model checkpoints are read (``checkpoint`` in the extract config)."""

    allow_pickle: bool = False
    """Allow checkpoints that need pickle (arbitrary code at load). Only for trusted files."""
