"""The driver of a training run: data, Ray Train's TorchTrainer, then the final evaluation task.

The workers do the work: each reads its own rows, rank 0 validates every epoch and, after the
last one, writes best.pth, metrics.json and the figures from memory (:mod:`core.train.loop`).
The driver exports and evaluates from the checkpoints only when rank 0 could not (a resumed
run whose best epoch an earlier process trained; a run stopped by ``stop_after_epoch`` gets
history and curves).

Output layout (``OUTPUT`` is any URI Ray Train and :mod:`core.storage` both reach: a local
path or ``s3://``)::

    OUTPUT/checkpoints/      Ray Train's run folder (RunConfig(storage_path=OUTPUT,
                             name="checkpoints")): checkpoint_*/train_state.pt, its snapshot
    OUTPUT/config.py         the resolved config
    OUTPUT/best.pth          best epoch by validation AUC, localizer format (extract's input)
    OUTPUT/metrics.json      final evaluation of best.pth on the validation videos
    OUTPUT/ar_an.png, OUTPUT/training_curves.png, OUTPUT/history.json

Resuming (Ray Train V2, ray 2.60): a TorchTrainer whose RunConfig names the same
``storage_path`` and ``name`` finds ``checkpoint_manager_snapshot.json`` in the run folder and
hands the latest checkpoint to the workers through ``ray.train.get_checkpoint()``; the same
path serves worker-group restarts within a run (``FailureConfig(max_failures)``). V2 has no
``resume_from_checkpoint`` (it raises). So ``--resume`` reuses the folder, and a new run on a
folder that holds one is refused instead of silently continuing it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from mmengine.config import Config

from core import config as config_lib
from core import runtime, storage
from core.eval.report import METRICS
from core.train import data, final_eval, warm
from core.train.backend import WorldAwareTorchConfig
from core.train.config import TrainConfig, fingerprint_dict, validate_train_config
from core.train.loop import FINAL_TASK, load_state_file
from core.train.worker import train_loop_per_worker

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
CONFIG_FILE = "config.py"
SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train V2's run state (ray 2.60)


class TrainRunError(RuntimeError):
    """A run that must not start: output conflicts, a resume with another config."""


@dataclasses.dataclass
class TrainSummary:
    output_uri: str
    epochs_done: int
    epochs: int
    seconds: float
    history: list[dict[str, float]]
    best_uri: str | None = None
    best_epoch: int | None = None
    best_sha256: str | None = None
    metrics: dict[str, Any] | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    """Seconds per phase: ``time_prepare_s`` (annotations, features index), ``time_fit_s``
    (Ray Train, of which the workers': ``time_worker_start_s`` until the loop runs, of which
    ``time_worker_process_s`` until the worker's process existed, ``time_warm_*_s`` until
    the warm hook (:mod:`core.train.warm`) had started and imported each of its modules,
    ``time_rows_and_imports_s`` reading the rows while the training code imports (of which
    ``time_read_rows_s`` and ``time_worker_imports_s``), ``time_model_build_s`` (of which
    ``time_model_new_s`` the model and optimizer, ``time_prepare_model_s`` Ray's
    ``prepare_model``),
    ``time_ingest_s`` the targets (and the rows when not read before), ``time_graph_warmup_s``,
    ``time_snapshots_s`` the epochs' train states and validation weights taken,
    ``time_final_task_s``, ``time_report_s``), ``time_after_fit_s``; ``torch_dynamo_imported``
    1.0 where the worker imported ``torch._dynamo`` (:mod:`core.train.optim`); per epoch see
    the history (``train_seconds``, ``val_seconds``, ``val_wait_seconds``)."""

    @property
    def finished(self) -> bool:
        return self.epochs_done >= self.epochs


def absolute_uri(uri: str) -> str:
    """Local paths made absolute: Ray Train workers run in another working directory."""
    return os.path.abspath(storage.strip_protocol(uri)) if storage.is_local(uri) else uri


def resolve_model_cfg(model: Mapping[str, Any], training_set: data.TrainingSet) -> dict[str, Any]:
    """The model dict with ``num_action_classes`` filled in, checked against the data.

    Raises:
        config.ConfigError: feat_dim / temporal_dim do not match the features, or the number
            of classes does not match the annotations.
    """
    out = dict(model)
    out.setdefault("type", "BMNwActionCls")
    k = len(training_set.class_names)
    if out.get("num_action_classes", 0) is None:
        out["num_action_classes"] = k
    elif out.get("num_action_classes", 0) not in (0, k):
        raise config_lib.ConfigError(
            f"model.num_action_classes={out['num_action_classes']} but the annotations have "
            f"{k} classes: set it to {k}, to None (from the annotations) or 0 (no action head)"
        )
    for key, have in (("feat_dim", training_set.C), ("temporal_dim", training_set.T)):
        if out.get(key) != have:
            raise config_lib.ConfigError(
                f"model.{key}={out.get(key)} but the features have {have} "
                f"({'channels' if key == 'feat_dim' else 'positions'}): set model.{key}={have}"
            )
    return out


def check_output(output_uri: str, cfg: TrainConfig, resume: bool) -> bool:
    """Whether a previous run can be continued; raises TrainRunError on a conflict."""
    has_run = storage.exists(storage.join(output_uri, CHECKPOINTS, SNAPSHOT))
    if has_run and not resume:
        raise TrainRunError(
            f"{output_uri} already holds a training run: pass --resume to continue it, "
            "or choose a new --output"
        )
    if not has_run:
        if resume:
            log.warning("--resume: no previous run under %s, starting from scratch", output_uri)
        return False
    previous_uri = storage.join(output_uri, CONFIG_FILE)
    with storage.local_path(previous_uri, suffix=".py") as path:
        previous, _ = config_lib.load(path, TrainConfig)
    if fingerprint_dict(previous) != fingerprint_dict(cfg):
        old, new = fingerprint_dict(previous), fingerprint_dict(cfg)
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise TrainRunError(
            f"--resume with a config that differs from the run's ({previous_uri}) in {changed}: "
            "a resumed run must compute what the uninterrupted one would"
        )
    return True


def run_config_storage(output_uri: str) -> dict[str, Any]:
    """``storage_path`` (and ``storage_filesystem`` for object stores) of Ray's RunConfig."""
    if storage.is_local(output_uri):
        return {"storage_path": absolute_uri(output_uri)}
    fs, path = storage.pyarrow_filesystem(output_uri)
    return {"storage_path": path, "storage_filesystem": fs}


def make_trainer(
    cfg: TrainConfig,
    model_cfg: dict[str, Any],
    training_set: data.TrainingSet,
    output_uri: str,
    train_loop: Callable[[dict], None] = train_loop_per_worker,
):
    """A TorchTrainer (nothing runs yet). No Ray datasets: each worker reads its own rows."""
    import ray.train

    trainer_cls = trainer_class(runtime.embedded_ray())
    loop_config = {"cfg": cfg, "model_cfg": model_cfg, "training_set": training_set,
                   "output_uri": output_uri, "fit_started_at": time.time()}  # fmt: skip
    return trainer_cls(
        train_loop,
        train_loop_config=loop_config,
        torch_config=WorldAwareTorchConfig(),
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.scaling.num_workers,
            use_gpu=cfg.scaling.use_gpu,
            resources_per_worker={"CPU": cfg.scaling.cpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name=CHECKPOINTS,
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=cfg.checkpoint.num_to_keep,
                checkpoint_score_attribute=cfg.checkpoint.score,
                checkpoint_score_order="max",
            ),
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            worker_runtime_env=warm.worker_runtime_env(),
            **run_config_storage(output_uri),
        ),
    )


def trainer_class(embedded: bool) -> type:
    """Ray's TorchTrainer; on a Ray this process started (:func:`core.runtime.embedded_ray`),
    one without Ray Train's placement-group cleaner (ray 2.60).

    The cleaner is an actor that removes the run's placement group should the controller die
    while the driver lives on. An embedded Ray ends with the driver, so there it has nothing to
    do, and it cannot work either: it asks the dashboard's state API, which the embedded Ray
    does not start, whether the controller lives, and fails, logging a warning to the job's
    output every second of the run. It also costs a process that starts beside the
    training worker's."""
    from ray.train.torch import TorchTrainer

    if not embedded:
        return TorchTrainer
    try:
        from ray.train.v2._internal.callbacks.placement_group_callback import (
            PlacementGroupCleanerCallback,
        )
    except ImportError:  # another Ray: its default callbacks as they are
        return TorchTrainer

    class EmbeddedTorchTrainer(TorchTrainer):
        def _create_default_callbacks(self):
            callbacks = super()._create_default_callbacks()
            return [c for c in callbacks if not isinstance(c, PlacementGroupCleanerCallback)]

    return EmbeddedTorchTrainer


def start_autoscaling_coordinator() -> None:
    """Starts the actor that Ray Train's controller asks for resources as it starts (ray
    2.60: ``AutoscalingCoordinator``, detached, one per cluster) ahead of the run. The
    controller waits up to 5 s for its answer, and on a fresh cluster the actor's process is
    not up in time when both start together: 5 s lost before any worker starts."""
    try:
        from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
            get_or_create_autoscaling_coordinator,
        )
    except ImportError:  # another Ray: whatever it needs starts with the run
        return
    get_or_create_autoscaling_coordinator()  # returns at once; the actor starts meanwhile


def best_checkpoint(result, score: str):
    """The kept checkpoint with the highest ``score`` (the earliest epoch among ties)."""
    candidates = [(c, m) for c, m in (result.best_checkpoints or []) if score in m]
    if not candidates:
        raise TrainRunError(f"no checkpoint reported the validation metric {score!r}")
    return max(candidates, key=lambda cm: (cm[1][score], -cm[1]["epoch"]))


def _load_saved(checkpoint) -> dict[str, Any]:
    with checkpoint.as_directory() as directory:
        return load_state_file(directory)


def run_training(
    cfg: TrainConfig,
    raw_cfg: Config,
    features_uri: str,
    annotations_uri: str,
    output_uri: str,
    resume: bool = False,
    train_loop: Callable[[dict], None] = train_loop_per_worker,
) -> TrainSummary:
    """Trains, exports ``best.pth`` and evaluates it (see the module docstring).

    Raises:
        data.TrainDataError, config.ConfigError, TrainRunError: before anything runs.
        ray.train.TrainingFailedError: the workers failed more than ``max_failures`` times.
    """
    start = time.perf_counter()
    validate_train_config(cfg)
    start_autoscaling_coordinator()
    features_uri, annotations_uri = absolute_uri(features_uri), absolute_uri(annotations_uri)
    output_uri = absolute_uri(output_uri)
    check_output(output_uri, cfg, resume)
    data_cfg = cfg.data
    if data_cfg.val_annotations:
        data_cfg = dataclasses.replace(
            data_cfg, val_annotations=absolute_uri(data_cfg.val_annotations)
        )
    training_set = data.prepare_training_set(features_uri, annotations_uri, data_cfg)
    model_cfg = resolve_model_cfg(cfg.model, training_set)
    config_lib.save_resolved(raw_cfg, storage.join(output_uri, CONFIG_FILE))
    log.info(
        "training on %s videos, validating on %s, %d classes, features %d x %d, %d worker(s)",
        training_set.counts()[data.TRAIN], training_set.counts()[data.VAL],
        len(training_set.class_names), training_set.C, training_set.T, cfg.scaling.num_workers,
    )  # fmt: skip
    timings = {"time_prepare_s": time.perf_counter() - start}
    result = make_trainer(cfg, model_cfg, training_set, output_uri, train_loop).fit()
    timings["time_fit_s"] = time.perf_counter() - start - timings["time_prepare_s"]
    reported = dict(result.metrics or {})
    if reported.get(FINAL_TASK):  # rank 0 wrote every output after the last epoch
        history = storage.read_json(storage.join(output_uri, final_eval.HISTORY))
        summary = TrainSummary(output_uri, int(reported["epoch"]), cfg.epochs, 0.0, history)
        summary.best_uri = storage.join(output_uri, final_eval.BEST)
        summary.best_epoch, summary.best_sha256 = reported["best_epoch"], reported["best_sha256"]
        if cfg.final_eval:
            summary.metrics = storage.read_json(storage.join(output_uri, METRICS))
    else:
        summary = finish_from_checkpoints(cfg, result, model_cfg, training_set, output_uri)
    summary.seconds = time.perf_counter() - start
    timings["time_after_fit_s"] = (
        summary.seconds - timings["time_fit_s"] - timings["time_prepare_s"]
    )
    summary.timings = {
        **timings,
        **{k: v for k, v in reported.items() if k.startswith("time_") or k == warm.DYNAMO_IMPORTED},
    }
    return summary


def finish_from_checkpoints(
    cfg: TrainConfig,
    result,
    model_cfg: dict[str, Any],
    training_set: data.TrainingSet,
    output_uri: str,
) -> TrainSummary:
    """The outputs of a run whose workers did not write them: one stopped early, or resumed
    after its best epoch (whose weights only the checkpoints hold). Exports the best
    checkpoint and evaluates it in a Ray task."""
    import ray

    latest = _load_saved(result.checkpoint)
    summary = TrainSummary(output_uri, latest["epoch"], cfg.epochs, 0.0, latest["history"])
    storage.write_json(storage.join(output_uri, final_eval.HISTORY), summary.history)
    final_eval.write_training_curves(
        summary.history, storage.join(output_uri, final_eval.CURVES_PNG)
    )
    if not summary.finished:
        return summary
    checkpoint, metrics = best_checkpoint(result, cfg.checkpoint.score)
    saved = latest if metrics["epoch"] == latest["epoch"] else _load_saved(checkpoint)
    summary.best_uri = storage.join(output_uri, final_eval.BEST)
    summary.best_epoch = int(saved["epoch"])
    summary.best_sha256 = final_eval.export_best(
        saved, model_cfg, training_set.class_names, summary.best_uri,
        metrics={k: metrics[k] for k in metrics if _is_number(metrics[k])}, seed=cfg.seed,
    )  # fmt: skip
    if cfg.final_eval:
        task = ray.remote(final_eval.final_evaluation).options(
            num_cpus=1, num_gpus=1 if cfg.scaling.use_gpu else 0
        )
        device = "cuda" if cfg.scaling.use_gpu else "cpu"
        summary.metrics = ray.get(
            task.remote(summary.best_uri, training_set, output_uri, device, cfg.dtype,
                        cfg.val_batch_size)
        )  # fmt: skip
    return summary


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def summary_json(summary: TrainSummary) -> str:
    """A short JSON of the run for logs (no history)."""
    out = {k: v for k, v in dataclasses.asdict(summary).items() if k != "history"}
    if summary.metrics:
        out["metrics"] = {k: v for k, v in summary.metrics.items() if not isinstance(v, dict)}
    return json.dumps(out, indent=2, default=str)
