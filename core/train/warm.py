"""The first thing each training worker's process does (Ray's ``worker_process_setup_hook``):
start importing torch in a background thread.

Ray Train's workers import torch when they unpickle the training function
(:mod:`core.train.worker`), several seconds into their process's life: a thread that starts
the import when the process starts overlaps it with the rest of the process's start as a
Ray actor, whose main thread mostly waits on Ray's processes then. The main thread's own
``import torch`` then waits for the thread's (one import, never two). The thread then makes
torch.optim skip its ``torch._dynamo`` imports (:func:`core.train.optim.
skip_dynamo_markers`); where that cannot skip every one, it imports
``torch._dynamo`` instead, which the optimizer imports on its first use (seconds). Only
torch's modules and :mod:`core.train.optim` (torch alone, imported after it): nothing of Ray,
so the two threads' imports cannot wait on each other.

The hook is the embedded Ray's, so it runs in every worker process of the job, but it
imports only where :data:`ENV` is set: in Ray Train's workers, whose runtime environment
(:func:`worker_runtime_env`) sets it. Everywhere else (Ray Train's controller and helper
actors, the figure processes) it returns at once: an import there would only hold the GIL
that the process's own start-up needs.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time

HOOK = "core.train.warm.start"  # what runtime_env's worker_process_setup_hook names
ENV = "CORE_TRAIN_WARM_IMPORTS"  # set in the training workers' environment only
MODULES = ("torch",)
FALLBACK = "torch._dynamo"  # imported instead where torch.optim's imports cannot be skipped
DYNAMO_IMPORTED = "torch_dynamo_imported"  # a timing: 1.0 where the worker imported it after all
DONE_AT: dict[str, float] = {}
"""When (``time.time()``) the thread had imported each of :data:`MODULES` (and
:data:`FALLBACK` where it did; "start": when it started), in this process: the worker's
timings say whether they were in before it needed them."""


def worker_runtime_env() -> dict:
    """The runtime environment of Ray Train's workers (``RunConfig.worker_runtime_env``):
    marks their processes as the ones the hook warms."""
    return {"env_vars": {ENV: "1"}}


def start() -> None:
    """Starts the background import in a training worker and returns at once."""
    if os.environ.get(ENV) != "1":
        return
    DONE_AT["start"] = time.time()
    threading.Thread(target=_import_all, name="warm-import", daemon=True).start()


def _import_all() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001  (the process imports it again where it needs it)
            return
        DONE_AT[name] = time.time()
    from core.train.optim import skip_dynamo_markers

    if not skip_dynamo_markers() and FALLBACK not in sys.modules:
        importlib.import_module(FALLBACK)
        DONE_AT[FALLBACK] = time.time()
