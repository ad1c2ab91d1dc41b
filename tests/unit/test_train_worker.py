"""core.train.worker and core.train.backend: the light worker entry, and the torch backend
without a process group for one worker, importable without torch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


class FakeWorkerGroup:
    def __init__(self, size: int) -> None:
        self.size, self.executed = size, []

    def __len__(self) -> int:
        return self.size

    def execute(self, fn, *args, **kwargs):
        self.executed.append(fn.__name__)
        return [None] * self.size


def test_one_worker_gets_the_environment_but_no_process_group(monkeypatch):
    from ray.train.torch.config import _TorchBackend

    from core.train.backend import WorldAwareTorchConfig

    started = []
    monkeypatch.setattr(_TorchBackend, "on_start", lambda self, wg, cfg: started.append(len(wg)))
    config = WorldAwareTorchConfig()
    backend = config.backend_cls()
    one = FakeWorkerGroup(1)
    backend.on_start(one, config)
    assert one.executed == ["_set_distributed_env_vars"] and started == []
    two = FakeWorkerGroup(2)
    backend.on_start(two, config)
    assert started == [2]  # Ray's own set-up, process group included


def test_the_backend_config_unpickles_without_torch():
    """Ray Train's controller unpickles the backend config as it starts: nothing there may
    import torch (seconds on the path to the first step)."""
    import pickle

    from core.train.backend import WorldAwareTorchConfig

    blob = pickle.dumps(WorldAwareTorchConfig(backend="gloo"))
    code = ("import pickle, sys; c = pickle.loads(sys.stdin.buffer.read()); "
            "c.backend_cls(); print(c.backend, 'torch' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True,
                         check=True)  # fmt: skip
    assert out.stdout.decode().split() == ["gloo", "False"]


def test_the_warm_hook_imports_only_in_training_workers():
    from core.train import warm

    code = (
        "import sys, time, core.train.warm as w; w.start(); deadline = time.time() + 20\n"
        "done = lambda: all(m in w.DONE_AT for m in w.MODULES)\n"
        "while not done() and time.time() < deadline: time.sleep(0.05)\n"
        "time.sleep(0.2)  # the thread's skip of torch.optim's imports, after torch's\n"
        "print(done(), 'torch' in sys.modules, 'torch._dynamo' in sys.modules, "
        "','.join(sorted(w.DONE_AT)))"
    )  # the cold process (2 s deadline) waits to the end: nothing imports torch there
    env = {k: v for k, v in os.environ.items() if k != warm.ENV}
    warmed_env = {**env, **warm.worker_runtime_env()["env_vars"]}
    warmed = subprocess.run([sys.executable, "-c", code], env=warmed_env, capture_output=True,
                            text=True, check=True)  # fmt: skip
    cold = subprocess.run([sys.executable, "-c", code.replace("20", "2")], env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert warm.MODULES == ("torch",)
    assert cold.stdout.strip() == "False False False"  # nor a time recorded
    # torch with its time; torch.optim's own import of torch._dynamo skipped, not made
    assert warmed.stdout.strip() == "True True False start,torch"


def test_the_worker_module_does_not_import_the_model_or_mmaction_models():
    code = ("import sys, core.train.worker; "
            "print(sorted(m for m in ('core.train.loop', 'core.models', 'mmaction.models') "
            "if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_worker_unpickles_its_config_without_mmengine():
    """The schemas hold no MMEngine: it is imported where a config file is read (the driver),
    not in a worker that only unpickles the run's TrainConfig (0.2 s of its GIL-bound start)."""
    code = ("import sys, core.train.worker, core.train.loop, core.train.config; "
            "print('mmengine' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_training_code_and_the_model_do_not_import_mmaction():
    """The worker's training code (:mod:`core.train.loop`) builds the plain network: no
    MMAction2 import, which cost the worker seconds before its first step."""
    code = ("import sys, core.train.loop, core.models, core.models.localizer; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mmaction'))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_embedded_run_starts_no_placement_group_cleaner():
    """On a Ray the job started itself, Ray Train's placement-group cleaner (an actor that asks
    the dashboard's state API, which that Ray lacks, every second, and warns when it cannot)
    is left out; on a cluster the trainer is Ray's own."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from core.train.trainer import trainer_class

    def callbacks(cls) -> set[str]:
        trainer = cls(lambda: None, scaling_config=ray.train.ScalingConfig(num_workers=1))
        return {type(c).__name__ for c in trainer._create_default_callbacks()}

    assert trainer_class(embedded=False) is TorchTrainer
    ours, rays = callbacks(trainer_class(embedded=True)), callbacks(TorchTrainer)
    assert rays - ours == {"PlacementGroupCleanerCallback"} and ours <= rays


def test_the_embedded_ray_runs_no_preemption_watcher_nor_train_metrics():
    from jobs.train import embedded_ray_env

    env = embedded_ray_env()
    assert env["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"
    assert env["RAY_TRAIN_METRICS_ENABLED"] == "0"


def test_embedded_ray_is_the_ray_init_ray_started():
    """``embedded_ray`` names the Ray that ``init_ray`` started, not a later one."""
    code = (
        "import ray, core.runtime as r\n"
        "r.init_ray(num_cpus=1); started = r.embedded_ray(); ray.shutdown()\n"
        "ray.init(num_cpus=1, include_dashboard=False); other = r.embedded_ray(); ray.shutdown()\n"
        "print(started, other, r.embedded_ray())"
    )  # another process: the suite's own Ray is not disturbed
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.split()[-3:] == ["True", "False", "False"]
