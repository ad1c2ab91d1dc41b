"""The first thing each worker process of an embedded training run does (Ray's
``worker_process_setup_hook``): start importing torch in a background thread.

Ray Train's controller and workers import torch when they unpickle the training function
(:mod:`core.train.worker`, through ``ray.train.torch``), several seconds into their process's
life: a thread that starts the import when the process starts overlaps it with the rest of
the process's start as a Ray actor. The main thread's own ``import torch`` then waits for the
thread's (one import, never two). Only torch: it imports nothing of Ray or of this project,
so the two threads' imports cannot wait on each other.
"""

from __future__ import annotations

import importlib
import threading

HOOK = "core.train.warm.start"  # what runtime_env's worker_process_setup_hook names
MODULES = ("torch",)


def start() -> None:
    """Starts the background import and returns at once."""
    threading.Thread(target=_import_all, name="warm-import", daemon=True).start()


def _import_all() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001  (the process imports it again where it needs it)
            return
