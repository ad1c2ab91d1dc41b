"""torch's Adam, stepped, scheduled and checkpointed without importing ``torch._dynamo``.

``torch._dynamo`` is torch.compile's tracer: 2.3 s of imports on 2 cores, and on the GPU
machine about 6 s of a training worker's start, where it holds the GIL that Ray's start of
the worker and the reading of its rows need too. Training never traces (its step is eager or
a CUDA graph), yet torch.optim (2.11-2.13) imports it on first use only to keep a tracer out:

* ``Adam.step`` runs in a wrapper that imports it on every call to call its
  ``graph_break()``, a no-op outside a trace: :class:`Adam` steps without that wrapper, under
  the grad mode the wrapper sets (off, for a non-differentiable optimizer);
* ``Optimizer.add_param_group``, ``state_dict``, ``load_state_dict`` and ``zero_grad`` and
  the functional ``adam`` are wrapped in ``torch._disable_dynamo``, which imports it at the
  first call to build the tracer's "do not trace" version of the function:
  :func:`skip_dynamo_markers` gives each wrapper the function itself as that version (what
  a process without a tracer runs anyway). A training worker calls it at its start
  (:mod:`core.train.warm`, :mod:`core.train.worker`); it leaves a process that has already
  imported ``torch._dynamo`` as it is, and belongs in no process that traces.

The numbers are torch's own (:mod:`tests.unit.test_train_optim` compares them).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

import torch

_MARKED = ("add_param_group", "state_dict", "load_state_dict", "zero_grad")


class Adam(torch.optim.Adam):
    """:class:`torch.optim.Adam` whose ``step`` imports nothing (see the module docstring)."""

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return _ADAM_STEP(self, closure)


_ADAM_STEP = inspect.unwrap(torch.optim.Adam.step)  # torch's step, none of its wrappers


def skip_dynamo_markers() -> bool:
    """Makes torch.optim's ``torch._disable_dynamo`` wrappers call their functions directly
    (see the module docstring) where ``torch._dynamo`` is not imported; True when every one
    this knows skips it now (by this call or an earlier one), False where it is imported
    already or any wrapper is not the one this knows (that one still imports it)."""
    if "torch._dynamo" in sys.modules:
        return False
    from torch import _compile

    marker = _compile._disable_dynamo(_noop).__code__  # the code of every such wrapper
    wrappers = [getattr(torch.optim.Optimizer, name) for name in _MARKED]
    wrappers.append(sys.modules[torch.optim.Adam.__module__].adam)  # torch.optim.adam.adam
    skipped = 0
    for wrapper in wrappers:
        fn = _marked_function(wrapper, marker)
        if fn is not None and getattr(fn, "__dynamo_disable", None) is None:
            setattr(fn, "__dynamo_disable", fn)  # the wrapper's cache of the tracer's version
        skipped += fn is not None and getattr(fn, "__dynamo_disable", None) is fn
    return skipped == len(wrappers)


def _noop() -> None:
    return None


def _marked_function(wrapper: Callable, marker: Any) -> Callable | None:
    """The function that a ``torch._disable_dynamo`` wrapper of ``marker``'s code wraps,
    found through ``functools.wraps`` chains and closures (depth-first), or None."""
    stack, seen = [wrapper], set()
    while stack:
        fn = stack.pop()
        fn = getattr(fn, "__func__", fn)
        if id(fn) in seen or not callable(fn):
            continue
        seen.add(id(fn))
        code = getattr(fn, "__code__", None)
        if code is marker:
            cells = dict(zip(code.co_freevars, fn.__closure__ or (), strict=True))
            return cells["fn"].cell_contents if "fn" in cells else None
        stack.extend(cell.cell_contents for cell in getattr(fn, "__closure__", None) or ()
                     if _filled(cell))  # fmt: skip
        if hasattr(fn, "__wrapped__"):
            stack.append(fn.__wrapped__)
    return None


def _filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018  (an empty cell raises)
    except ValueError:
        return False
    return True
