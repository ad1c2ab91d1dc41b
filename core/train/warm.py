"""The first thing each training worker's process does (Ray's ``worker_process_setup_hook``):
start importing torch in a background thread.

Ray Train's workers import torch when they unpickle the training function
(:mod:`core.train.worker`), several seconds into their process's life, and ``torch._dynamo``
when the optimizer is built (``Optimizer.add_param_group`` imports it on its first call; 5.9 s
in a worker on the GPU machine): a thread that starts both imports when the process starts
overlaps them with the rest of the process's start as a Ray actor, whose main thread mostly
waits on Ray's processes then. The main thread's own ``import torch`` then waits for the
thread's (one import, never two). Only torch's modules: they import nothing of Ray or of this
project, so the two threads' imports cannot wait on each other.

The hook is the embedded Ray's, so it runs in every worker process of the job, but it
imports only where :data:`ENV` is set: in Ray Train's workers, whose runtime environment
(:func:`worker_runtime_env`) sets it. Everywhere else (Ray Train's controller and helper
actors, the figure processes) it returns at once: an import there would only hold the GIL
that the process's own start-up needs.
"""

from __future__ import annotations

import importlib
import os
import threading
import time

HOOK = "core.train.warm.start"  # what runtime_env's worker_process_setup_hook names
ENV = "CORE_TRAIN_WARM_IMPORTS"  # set in the training workers' environment only
MODULES = ("torch", "torch._dynamo")
DONE_AT: dict[str, float] = {}
"""When (``time.time()``) the thread had imported each of :data:`MODULES` ("start": when it
started), in this process: the worker's timings say whether they were in before it needed
them."""


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
