"""Shims for upstream bugs. Import this module before anything imports ``mmaction``.

Each shim names the upstream version and issue it exists for; delete it when the pin moves past.

* mmaction2 1.2.0 (PyPI wheel): ``mmaction/models/localizers/__init__.py`` imports
  ``.drn.drn.DRN`` but the wheel ships no ``drn`` folder (open-mmlab/mmaction2#2714), so
  ``import mmaction.models`` raises ModuleNotFoundError. One placeholder,
  ``core/mmaction/drn_placeholder.py`` (a ``DRN`` that raises a clear error when built), serves
  twice: ``make setup`` writes it into the installed mmaction with :func:`install_drn_package`
  (so MMAction2's own ``tools/train.py`` imports, without this project), and importing this
  module adds a last-resort import finder that serves the same file where an environment was
  set up differently. A real ``drn`` on disk always wins over the finder.
* mmaction2 1.2.0's VindLU models import ``apply_chunking_to_forward`` and friends from
  ``transformers.modeling_utils``, which newer transformers releases no longer export, so with
  such a transformers installed ``import mmaction.models`` fails. When that import fails we
  mark mmaction's multimodal extras unavailable (its own fallback: placeholders that raise when
  built), which every other model is unaffected by.
* mmaction2 1.2.0 imports ``importlib_metadata`` without declaring it: pyproject.toml declares it.
* mmaction2 1.2.0 calls ``np.trapz``, removed in numpy 2.4: pyproject.toml pins numpy < 2.4.
  Our own metrics (core.eval) do not call it.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import sys
import types

_DRN_PACKAGE = "mmaction.models.localizers.drn"
_DRN_MODULE = _DRN_PACKAGE + ".drn"
_PLACEHOLDER = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "mmaction", "drn_placeholder.py"
)
_PLACEHOLDER_TITLE = "Placeholder for mmaction2's DRN"  # its docstring's first words
_PACKAGE_INIT = (
    f'"""{_PLACEHOLDER_TITLE}: see drn.py."""\n\nfrom .drn import DRN\n\n__all__ = ["DRN"]\n'
)


class _EmptyPackageLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None  # the default module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class _DRNPlaceholderFinder(importlib.abc.MetaPathFinder):
    """Last on ``sys.meta_path``: serves ``mmaction.models.localizers.drn`` (an empty package)
    and its ``drn`` module (the placeholder file) only when no other finder has them."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        if fullname == _DRN_PACKAGE:
            return importlib.machinery.ModuleSpec(fullname, _EmptyPackageLoader(), is_package=True)
        if fullname == _DRN_MODULE:
            return importlib.util.spec_from_file_location(fullname, _PLACEHOLDER)
        return None


def install_drn_placeholder() -> None:
    """Makes ``import mmaction.models`` work without a ``drn`` on disk (idempotent, lazy:
    nothing is imported until mmaction imports the module)."""
    if not any(isinstance(f, _DRNPlaceholderFinder) for f in sys.meta_path):
        sys.meta_path.append(_DRNPlaceholderFinder())


def install_drn_package() -> str:
    """Writes the placeholder into the installed mmaction as ``models/localizers/drn/``
    (``__init__.py`` and ``drn.py``, added to mmaction2's RECORD so that ``pip uninstall``
    removes them). Leaves a real DRN alone; rewrites an earlier placeholder.

    Returns:
        The ``drn`` folder.
    """
    dist = importlib.metadata.distribution("mmaction2")
    site = str(dist.locate_file(""))
    folder = os.path.join(site, "mmaction", "models", "localizers", "drn")
    module_path = os.path.join(folder, "drn.py")
    if os.path.exists(module_path):
        with open(module_path, encoding="utf-8") as f:
            if _PLACEHOLDER_TITLE not in f.read():
                return folder  # the real DRN
    with open(_PLACEHOLDER, encoding="utf-8") as f:
        files = {os.path.join(folder, "__init__.py"): _PACKAGE_INIT, module_path: f.read()}
    os.makedirs(folder, exist_ok=True)
    for path, text in files.items():
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    _add_to_record(dist, site, files)
    return folder


def _add_to_record(dist: importlib.metadata.Distribution, site: str, files: dict) -> None:
    record = next((f for f in dist.files or [] if f.name == "RECORD"), None)
    if record is None:
        return
    record_path = str(record.locate())
    with open(record_path, encoding="utf-8") as f:
        known = {line.split(",")[0] for line in f}
    with open(record_path, "a", encoding="utf-8") as f:
        for path, text in files.items():
            rel = os.path.relpath(path, site).replace(os.sep, "/")
            if rel not in known:
                data = text.encode("utf-8")
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                f.write(f"{rel},sha256={digest.decode()},{len(data)}\n")


def disable_broken_multimodal() -> None:
    """Turns mmaction's VindLU off when the installed transformers cannot serve it."""
    spec = importlib.util.find_spec("transformers")
    if spec is None or "mmaction.models" in sys.modules:
        return
    # read, not imported: importing transformers.modeling_utils takes ~20 s on a cold start,
    # in every process that imports core (the jobs, each Ray worker)
    source = os.path.join(os.path.dirname(spec.origin or ""), "modeling_utils.py")
    try:
        with open(source, encoding="utf-8") as f:
            serves_vindlu = "apply_chunking_to_forward" in f.read()
    except OSError:
        serves_vindlu = False
    if serves_vindlu:
        return
    dependency = sys.modules.get(_DEPENDENCY_MODULE)
    if dependency is not None:
        dependency.WITH_MULTIMODAL = False
    elif not any(isinstance(f, _MultimodalOffFinder) for f in sys.meta_path):
        # set when mmaction imports the module: importing it here would import mmaction, mmcv
        # and torch (seconds) in every process that imports core, used or not
        sys.meta_path.insert(0, _MultimodalOffFinder())


_DEPENDENCY_MODULE = "mmaction.utils.dependency"


class _MultimodalOffFinder(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path`` until mmaction imports ``mmaction.utils.dependency``: lets
    the other finders find the module and sets its ``WITH_MULTIMODAL`` to False once it has
    run (before mmaction's multimodal package reads it)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        if fullname != _DEPENDENCY_MODULE:
            return None
        sys.meta_path.remove(self)  # once
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            run(module)
            module.WITH_MULTIMODAL = False

        spec.loader.exec_module = exec_module
        return spec


install_drn_placeholder()
disable_broken_multimodal()
