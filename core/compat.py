"""Shims for upstream bugs. Import this module before anything imports ``mmaction``.

Each shim names the upstream version and issue it exists for; delete it when the pin moves past.

* mmaction2 1.2.0 (PyPI wheel): ``mmaction/models/localizers/__init__.py`` imports
  ``.drn.drn.DRN`` but the wheel ships no ``drn`` folder (open-mmlab/mmaction2#2714), so
  ``import mmaction.models`` raises ModuleNotFoundError. We install an in-memory
  ``mmaction.models.localizers.drn`` package whose ``DRN`` raises a clear error when built.
  If a later wheel ships the real module, the shim steps aside.
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

import importlib.util
import sys
import types

_DRN_MODULE = "mmaction.models.localizers.drn"


class DRNUnavailable:
    """Stands in for mmaction2's DRN, which the 1.2.0 wheel does not ship."""

    def __init__(self, *args, **kwargs) -> None:
        raise RuntimeError(
            "DRN is not available: the mmaction2 1.2.0 wheel on PyPI does not ship "
            "mmaction/models/localizers/drn (open-mmlab/mmaction2#2714). Install mmaction2 "
            "from source to use DRN."
        )


def _drn_missing() -> bool:
    if _DRN_MODULE in sys.modules:
        return False
    spec = importlib.util.find_spec("mmaction")
    if spec is None or not spec.submodule_search_locations:
        return False
    import os

    root = list(spec.submodule_search_locations)[0]
    return not os.path.exists(os.path.join(root, "models", "localizers", "drn", "drn.py"))


def install_drn_placeholder() -> None:
    """Registers an importable ``mmaction.models.localizers.drn.drn`` with ``DRN``."""
    if not _drn_missing():
        return
    package = types.ModuleType(_DRN_MODULE)
    package.__path__ = []  # a package, so that ``.drn.drn`` resolves
    module = types.ModuleType(_DRN_MODULE + ".drn")

    class DRN(DRNUnavailable):
        pass

    DRN.__module__ = module.__name__
    module.DRN = DRN
    package.drn = module
    package.DRN = DRN
    sys.modules[_DRN_MODULE] = package
    sys.modules[module.__name__] = module


def disable_broken_multimodal() -> None:
    """Turns mmaction's VindLU off when the installed transformers cannot serve it."""
    if importlib.util.find_spec("transformers") is None or "mmaction.models" in sys.modules:
        return
    try:
        from transformers.modeling_utils import apply_chunking_to_forward  # noqa: F401
    except ImportError:
        import mmaction.utils.dependency as dependency

        dependency.WITH_MULTIMODAL = False


install_drn_placeholder()
disable_broken_multimodal()
