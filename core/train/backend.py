"""Ray Train's torch set-up for a training run, in a module that does not import torch.

Ray Train's controller (an actor of its own, ray 2.60) unpickles the run's backend config
as it starts, before any worker exists. :class:`ray.train.torch.TorchConfig` lives in a
module that imports torch at the top, so with it every run's controller imported torch
first (seconds, on the path to the first training step) only to hold three settings.
:class:`WorldAwareTorchConfig` holds the same settings here and reaches torch through
functions that run in the workers, which import torch anyway.

It is Ray's torch set-up (process group, distributed environment variables, CUDA caches
emptied at the end) with one change: a run of one worker sets up no process group (nothing
to reduce, no DDP), so it starts without NCCL's set-up. :func:`core.train.loop._all_reduce`
and ``_broadcast`` are identities then, and ``prepare_model`` wraps no DDP at world size 1.
"""

from __future__ import annotations

import dataclasses
import logging

from ray.train.backend import Backend, BackendConfig

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 30.0  # as Ray's TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S default


@dataclasses.dataclass
class WorldAwareTorchConfig(BackendConfig):
    """:class:`ray.train.torch.TorchConfig`'s settings (``TorchTrainer`` fills ``backend``:
    ``nccl`` with GPUs, else ``gloo``), without a process group for a single worker."""

    backend: str | None = None
    init_method: str = "env"
    timeout_s: int = 1800

    @property
    def backend_cls(self) -> type[Backend]:
        return _WorldAwareBackend

    @property
    def train_func_context(self):
        """What runs around the training function in each worker: its CUDA device set as
        the current one (Ray's ``TorchConfigContextManager``)."""
        return _DeviceContext

    @property
    def framework(self):
        from ray.train.v2._internal.util import TrainingFramework

        return TrainingFramework.TORCH


class _DeviceContext:
    def __enter__(self) -> None:
        from ray.train.torch.config import TorchConfigContextManager

        TorchConfigContextManager().__enter__()

    def __exit__(self, *exc) -> bool:
        return False


class _WorldAwareBackend(Backend):
    """Ray's ``_TorchBackend`` (ray 2.60), minus ``init_process_group`` for one worker;
    everything that needs torch runs in the workers."""

    share_cuda_visible_devices = True

    def on_start(self, worker_group, backend_config: WorldAwareTorchConfig) -> None:
        if len(worker_group) > 1:  # DDP: Ray's own set-up (torch imported here only then)
            from ray.train.torch.config import _TorchBackend

            _TorchBackend().on_start(worker_group, backend_config)
            return
        worker_group.execute(_set_distributed_env_vars)

    def on_shutdown(self, worker_group, backend_config: WorldAwareTorchConfig) -> None:
        import ray

        refs = worker_group.execute_async(_shutdown_torch, len(worker_group) > 1)
        try:
            ray.get(refs, timeout=SHUTDOWN_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            log.warning("torch shutdown in the workers timed out after %s s", SHUTDOWN_TIMEOUT_S)


def _set_distributed_env_vars() -> None:
    """In a worker: RANK, WORLD_SIZE, LOCAL_RANK ... as torchrun sets them."""
    from ray.train.torch.config import _set_torch_distributed_env_vars

    _set_torch_distributed_env_vars()


def _shutdown_torch(destroy_process_group: bool) -> None:
    """In a worker: the process group destroyed (when there is one), CUDA caches emptied."""
    from ray.train.torch.config import _shutdown_torch as shutdown

    shutdown(destroy_process_group=destroy_process_group)
