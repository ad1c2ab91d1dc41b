"""The Ray Train worker's entry point, kept light: what Ray imports to start a worker.

Ray Train ships the worker function by reference, so the module that defines it is imported
in every worker's process before the function runs, ahead of anything useful. This module
imports only torch, pyarrow and the data layer; the model and the step
(:mod:`core.train.loop`) load in a second thread while the worker reads its rows from
the files, then :func:`core.train.loop.train_loop_per_worker` runs on them. torch.optim's
imports of ``torch._dynamo`` are skipped first (:func:`core.train.optim.
skip_dynamo_markers`; where the warm hook did not run, e.g. on a cluster); where they cannot
be, the second thread imports it too, as the optimizer would on its first use.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from typing import Any

import torch  # noqa: F401  (before the second thread: one thread imports it, not two)

from core.train import data, optim

IMPORT_SECONDS = "time_worker_imports_s"  # the training code's imports, in the second thread
READ_SECONDS = "time_read_rows_s"  # reading the rows, meanwhile
BOTH_SECONDS = "time_rows_and_imports_s"  # until both were done

LAZY_TORCH_MODULE = "torch._dynamo"
"""What torch.optim imports on first use (torch 2.11-2.13: seconds, 5.9 s in a worker on the
GPU machine), imported beside the rows where :func:`core.train.optim.skip_dynamo_markers`
cannot skip it."""


class _Importer(threading.Thread):
    """Imports a module, then ``also``, in the background; :meth:`module` joins and raises
    what the first import raised (the others are only early: their users import them)."""

    def __init__(self, name: str, also: tuple[str, ...] = ()) -> None:
        super().__init__(name=f"import-{name}", daemon=True)
        self.target, self.result, self.error, self.seconds = name, None, None, 0.0
        self.also = also

    def run(self) -> None:
        start = time.perf_counter()
        try:
            self.result = importlib.import_module(self.target)
        except BaseException as e:  # noqa: BLE001  (re-raised on the worker's thread)
            self.error = e
        for name in self.also if self.error is None else ():
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001  (imported again, with its error, where used)
                break
        self.seconds = time.perf_counter() - start

    def module(self):
        self.join()
        if self.error is not None:
            raise self.error
        return self.result


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train's worker function (``loop_config`` as :func:`core.train.loop.
    train_loop_per_worker` takes it): its rows are read while the training code imports."""
    import ray.train
    import ray.train.torch

    entered_at, start = time.time(), time.perf_counter()
    skipped = optim.skip_dynamo_markers() or LAZY_TORCH_MODULE in sys.modules
    importer = _Importer("core.train.loop", also=() if skipped else (LAZY_TORCH_MODULE,))
    importer.start()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    rows = read_rows(loop_config["training_set"], rank, world, device)
    read_seconds = time.perf_counter() - start
    loop = importer.module()
    timings = {IMPORT_SECONDS: importer.seconds, READ_SECONDS: read_seconds,
               BOTH_SECONDS: time.perf_counter() - start}  # fmt: skip
    loop.train_loop_per_worker(loop_config, rows=rows, entered_at=entered_at, timings=timings)


def read_rows(
    training_set: data.TrainingSet, rank: int, world: int, device: torch.device
) -> tuple[data.ShardArrays, data.ShardArrays | None]:
    """This worker's training rows (features on its device) and, on rank 0, the whole
    validation set, in one pass over the files."""
    wanted = {data.TRAIN: data.shard_ids(training_set, data.TRAIN, rank, world)}
    if rank == 0:
        wanted[data.VAL] = sorted(training_set.gt[data.VAL])
    shards = data.read_shards(training_set, wanted, device, device_splits=[data.TRAIN])
    return shards[data.TRAIN], shards.get(data.VAL)


def process_started_at() -> float | None:
    """When this process started, as ``time.time()`` (Linux's /proc); None elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")
