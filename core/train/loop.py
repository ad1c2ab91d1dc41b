"""The training loop: model, optimizer, one epoch, validation, train state; and the Ray Train
worker function that strings them together.

Everything but :func:`train_loop_per_worker` runs without Ray (unit tests call it on tiny
tensors). Randomness is derived from ``(seed, epoch, rank)`` at the start of every epoch (data
order, the PEM loss sampling, torch's global generator), so an epoch computes the same thing
whether the run was interrupted before it or not; the train state holds weights, optimizer,
scheduler, epochs done and the per-epoch history. The step itself (eager or a CUDA graph) is
:mod:`core.train.step`.

A worker spends its time on the steps: it reads its rows itself (:mod:`core.train.data`,
while this module imports: :mod:`core.train.worker`),
rank 0 validates each epoch in a second thread while the next epochs train
(:class:`core.train.evaluation.BackgroundValidation`; training waits for none of them until
the last epoch is done, and an epoch's report and checkpoint follow once its validation is in,
so a restart after a failure redoes at most the epochs still being validated, with the same
numbers), checkpoints go to a background upload (Ray Train's ``ASYNC`` mode, from a copy
of the state on the host), and rank 0 runs the final task in the same process when the run's
last epoch is done and the best epoch's weights and evaluation are in its memory
(:mod:`core.train.final_eval`; the figures on actors started with the run,
:mod:`core.train.figures`): no model load or pass over the validation set.

Shape legend: B batch, C channels, T positions, G segments per video.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import tempfile
import time
from collections import deque
from collections.abc import Mapping
from copy import deepcopy
from typing import Any

import torch
from torch import nn

from core.eval.metrics import Evaluation
from core.models import BMNNet, build_bmn_cls
from core.models.localizer import Localizer
from core.train import data, figures, final_eval, optim, step, warm
from core.train.config import OptimSection, TrainConfig
from core.train.evaluation import BackgroundValidation, headline_of, validation_evaluation
from core.train.final_eval import full_state_dict, host_copy
from core.train.step import DeviceShard, autocast_for, to_device, train_epoch

__all__ = ["DeviceShard", "autocast_for", "to_device", "train_epoch"]

log = logging.getLogger(__name__)

STATE_FILE = "train_state.pt"
SAMPLING_STREAM, TORCH_STREAM = 1, 2
SNAPSHOT_SECONDS = "time_snapshots_s"  # the epochs' train states and validation weights taken
FINAL_TASK = "final_task_done"  # reported by the last epoch when rank 0 wrote the outputs


@dataclasses.dataclass
class TrainState:
    """What a checkpoint restores."""

    model: BMNNet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    epoch: int = 0
    """Epochs done."""
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """One dict of losses and validation metrics per epoch done."""


def build_model(model_cfg: Mapping[str, Any], seed: int) -> BMNNet:
    """The model with weights drawn from ``seed`` (the same on every worker)."""
    torch.manual_seed(seed)
    return build_bmn_cls(model_cfg)


def build_optimizer(
    model: nn.Module, cfg: OptimSection, capturable: bool = False
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam over the trainable parameters and a step schedule stepped once per epoch
    (``capturable``: Adam's state and learning rate on the device and its update as one fused
    kernel, for a step captured as a CUDA graph: the schedule writes the rate into that
    tensor, so the graph needs no new capture when it changes)."""
    params = [p for p in model.parameters() if p.requires_grad]
    lr = _device_lr(cfg.lr, params[0].device) if capturable else cfg.lr
    optimizer = optim.Adam(  # torch's, without its step's torch._dynamo import
        params, lr=lr, weight_decay=cfg.weight_decay, capturable=capturable,
        fused=capturable or None,
    )  # fmt: skip
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.milestones, cfg.gamma)
    return optimizer, scheduler


def _device_lr(lr: float | torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.tensor(float(lr), dtype=torch.float32, device=device)


def learning_rate(optimizer: torch.optim.Optimizer) -> float:
    """The first group's learning rate as a float (a tensor for a captured step)."""
    return float(optimizer.param_groups[0]["lr"])


def new_train_state(
    model_cfg: Mapping[str, Any], cfg: TrainConfig, device: str, capturable: bool = False
) -> TrainState:
    model = build_model(model_cfg, cfg.seed).to(device)
    if torch.device(device).type == "cuda":
        step.use_channels_last(model)
    optimizer, scheduler = build_optimizer(model, cfg.optim, capturable)
    return TrainState(model, optimizer, scheduler)


def state_to_save(state: TrainState) -> dict[str, Any]:
    """Plain tensors and containers on the host, copies (loads with
    ``torch.load(weights_only=True)``), taken in one batch (:func:`host_copy`)."""
    weights = {k: v for k, v in state.model.state_dict().items() if k not in final_eval.CONSTANTS}
    tensors = host_copy([weights, state.optimizer.state_dict(), state.scheduler.state_dict()])
    return {
        "model": tensors[0],
        "optimizer": tensors[1],
        "scheduler": tensors[2],
        "epoch": state.epoch,
        "history": [dict(h) for h in state.history],
        "torch_rng": torch.get_rng_state(),  # for the record: each epoch reseeds
    }


def restore_state(state: TrainState, saved: Mapping[str, Any]) -> None:
    """Loads a :func:`state_to_save` dict into a freshly built state (same config)."""
    state.model.load_state_dict(full_state_dict(state.model, saved["model"]), strict=True)
    built_lr = [g["lr"] for g in state.optimizer.param_groups]
    state.optimizer.load_state_dict(saved["optimizer"])
    _match_layouts(state.optimizer)
    for group, lr in zip(state.optimizer.param_groups, built_lr, strict=True):
        # the saved rate in the form this optimizer was built with (a float, or a tensor on
        # the device for a captured step), whichever form the checkpoint holds it in
        group["lr"] = (
            _device_lr(group["lr"], lr.device) if torch.is_tensor(lr) else float(group["lr"])
        )
    state.scheduler.load_state_dict(saved["scheduler"])
    state.epoch = int(saved["epoch"])
    state.history = list(saved["history"])


def _match_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Optimizer state in its parameter's memory layout (a checkpoint written by a run whose
    weights lay otherwise, e.g. on the CPU): fused updates assume equal strides."""
    for param, state in optimizer.state.items():
        for key, value in state.items():
            same_shape = torch.is_tensor(value) and value.shape == param.shape
            if same_shape and value.stride() != param.stride():
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def save_state_file(state: TrainState, directory: str) -> str:
    path = f"{directory}/{STATE_FILE}"
    torch.save(state_to_save(state), path)
    return path


def load_state_file(directory: str) -> dict[str, Any]:
    return torch.load(f"{directory}/{STATE_FILE}", map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------- one epoch


def evaluate_state(
    state: TrainState,
    shard: data.ShardArrays,
    training_set: data.TrainingSet,
    dtype: str,
    batch_size: int,
) -> Evaluation | None:
    """The evaluation of the current weights on the validation videos (then back to train);
    None when nothing could be evaluated."""
    device = next(state.model.parameters()).device
    localizer = Localizer(state.model, training_set.class_names, str(device), dtype)
    try:
        return validation_evaluation(localizer, shard, training_set.val_annotations, batch_size)
    finally:
        state.model.train()


def validate(
    state: TrainState,
    shard: data.ShardArrays,
    training_set: data.TrainingSet,
    dtype: str,
    batch_size: int,
) -> dict[str, float]:
    """Headline metrics of the current weights on the validation videos (then back to train)."""
    evaluation = evaluate_state(state, shard, training_set, dtype, batch_size)
    return headline_of(evaluation)


def seed_epoch(
    seed: int, epoch: int, rank: int, device: torch.device,
    generator: torch.Generator | None = None,
) -> torch.Generator:  # fmt: skip
    """Reseeds torch's global generator and the PEM sampling generator of this epoch (a new
    one unless ``generator`` is given: a captured step keeps its own)."""
    torch.manual_seed(data.torch_seed(seed, epoch, rank, TORCH_STREAM))
    generator = generator if generator is not None else torch.Generator(device=device)
    generator.manual_seed(data.torch_seed(seed, epoch, rank, SAMPLING_STREAM))
    return generator


def last_epoch(cfg: TrainConfig) -> int:
    """Epochs done when this run ends: all, or ``stop_after_epoch`` if that comes first."""
    return cfg.epochs if cfg.stop_after_epoch is None else min(cfg.epochs, cfg.stop_after_epoch)


def steps_per_epoch(num_rows: int, per_worker_batch: int) -> int:
    return num_rows // per_worker_batch


def run_epoch(
    state: TrainState,
    net: nn.Module,
    train_shard: DeviceShard,
    cfg: TrainConfig,
    rank: int,
    world: int,
    graphed: step.GraphedStep | None = None,
) -> dict[str, float]:
    """One epoch on this worker: batches, training, losses averaged over the workers."""
    device = next(state.model.parameters()).device
    per_worker = cfg.batch_size // world
    steps = int(_all_reduce([steps_per_epoch(len(train_shard), per_worker)], "min", device)[0])
    if steps == 0:
        raise data.TrainDataError(
            f"a worker holds {len(train_shard)} training videos, fewer than its batch of "
            f"{per_worker}: lower batch_size or the number of workers"
        )
    batches = data.epoch_batches(len(train_shard), per_worker, steps, cfg.seed, state.epoch, rank)
    reuse = graphed.generator if graphed is not None else None
    generator = seed_epoch(cfg.seed, state.epoch, rank, device, reuse)
    start = time.perf_counter()
    losses = train_epoch(
        net, state.model, state.optimizer, train_shard, batches, dtype=cfg.dtype,
        grad_clip=cfg.optim.grad_clip_max_norm, generator=generator, graphed=graphed,
    )  # fmt: skip
    seconds = time.perf_counter() - start  # train_epoch's .tolist() waited for the device
    keys = sorted(losses)
    mean = [v / world for v in _all_reduce([losses[k] for k in keys], "sum", device)]
    out = dict(zip(keys, mean, strict=True))
    out.update(train_seconds=seconds, samples_per_s=steps * cfg.batch_size / seconds)
    out.update(steps=steps, lr=learning_rate(state.optimizer))
    return out


@dataclasses.dataclass
class BestEpoch:
    """The best epoch so far by the checkpoint score (the earliest among ties, as the
    trainer's choice of checkpoint), with its weights and evaluation when this process
    trained it."""

    score_key: str
    epoch: int | None = None
    score: float = -math.inf
    weights: dict[str, torch.Tensor] | None = None
    evaluation: Evaluation | None = None

    @classmethod
    def from_history(cls, score_key: str, history: list[dict[str, Any]]) -> BestEpoch:
        best = cls(score_key)
        for h in history:
            if h.get(score_key, -math.inf) > best.score:
                best.epoch, best.score = int(h["epoch"]), h[score_key]
        return best

    def offer(
        self, epoch: int, metrics: Mapping[str, Any], weights: dict[str, torch.Tensor], evaluation
    ) -> None:
        """Takes the epoch if it scores higher; ``weights``: host copies (:func:`state_to_save`)."""
        if metrics.get(self.score_key, -math.inf) > self.score:
            self.epoch, self.score = epoch, metrics[self.score_key]
            self.weights, self.evaluation = weights, evaluation

    @property
    def in_memory(self) -> bool:
        return self.weights is not None and self.evaluation is not None


# ----------------------------------------------------------------------------- Ray Train


def _all_reduce(values: list[float], op: str, device: torch.device) -> list[float]:
    """Sums or mins floats across the workers (identity without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MIN)
    return t.tolist()


def _broadcast(obj: Any) -> Any:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _restore_from_ray(state: TrainState) -> None:
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return
    with checkpoint.as_directory() as directory:
        restore_state(state, load_state_file(directory))
    log.info("restored epoch %d from %s", state.epoch, checkpoint.path)


def _report(snapshot: dict[str, Any] | None, metrics: dict[str, Any], rank: int) -> None:
    """Reports the epoch; rank 0 with a checkpoint that a background thread writes straight
    to the run's storage from ``snapshot`` (:func:`state_to_save`; training goes on)."""
    import ray.train

    mode = ray.train.CheckpointUploadMode.ASYNC
    if rank != 0:
        ray.train.report(metrics, checkpoint_upload_mode=mode)
        return
    storage_ctx = ray.train.get_context().get_storage()

    def write(_local, name: str) -> ray.train.Checkpoint:
        fs, path = storage_ctx.storage_filesystem, storage_ctx.build_checkpoint_path_from_name(name)
        fs.create_dir(path)
        with fs.open_output_stream(f"{path}/{STATE_FILE}") as f:
            torch.save(snapshot, f)
        return ray.train.Checkpoint(path=path, filesystem=fs)

    placeholder = ray.train.Checkpoint.from_directory(tempfile.mkdtemp(prefix="bmn-ckpt-"))
    ray.train.report(
        metrics, checkpoint=placeholder, checkpoint_upload_mode=mode,
        delete_local_checkpoint_after_upload=True, checkpoint_upload_fn=write,
    )  # fmt: skip


def train_loop_per_worker(
    loop_config: dict[str, Any],
    rows: tuple[data.ShardArrays, data.ShardArrays | None] | None = None,
    entered_at: float | None = None,
    timings: dict[str, float] | None = None,
) -> None:
    """Ray Train's worker function: restore, train epoch by epoch, validate, checkpoint, and
    (rank 0) the final task. Ray runs :func:`core.train.worker.train_loop_per_worker`, which
    reads the rows while this module imports and passes them here.

    ``loop_config``: ``cfg`` (TrainConfig), ``model_cfg`` (the resolved model dict),
    ``training_set`` (:class:`core.train.data.TrainingSet`), ``output_uri``, and
    ``fit_started_at`` (the driver's ``time.time()`` when it started the trainer). ``rows``:
    this worker's training rows and (rank 0) the validation rows, read if None;
    ``entered_at``: when the worker function started (``time.time()``); ``timings``: seconds
    measured before, reported with the others.
    """
    import ray.train
    import ray.train.torch

    from core.train import worker

    cfg: TrainConfig = loop_config["cfg"]
    training_set: data.TrainingSet = loop_config["training_set"]
    fit_started_at = loop_config.get("fit_started_at", time.time())
    entered_at = time.time() if entered_at is None else entered_at
    timings = {"time_worker_start_s": entered_at - fit_started_at, **(timings or {})}
    process_started_at = worker.process_started_at()
    if process_started_at is not None:  # negative: Ray had the process ready beforehand
        timings["time_worker_process_s"] = process_started_at - fit_started_at
    for name, at in warm.DONE_AT.items():  # the warm hook's imports, where it ran
        timings[f"time_warm_{name.replace('.', '_')}_s"] = at - fit_started_at
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    # the final task's figure processes, warm by the time it runs
    pool = figures.FigurePool() if rank == 0 and last_epoch(cfg) == cfg.epochs else None
    start = time.perf_counter()
    state = new_train_state(loop_config["model_cfg"], cfg, str(device))
    timings["time_model_new_s"] = time.perf_counter() - start  # of time_model_build_s
    graphs = step.graphs_apply(device, world, state.model)
    if graphs:  # Adam's state on the device, for the captured step
        state.optimizer, state.scheduler = build_optimizer(state.model, cfg.optim, True)
    _restore_from_ray(state)
    before_prepare = time.perf_counter()
    net = ray.train.torch.prepare_model(state.model)
    timings["time_prepare_model_s"] = time.perf_counter() - before_prepare  # of it too
    timings["time_model_build_s"] = time.perf_counter() - start
    start = time.perf_counter()
    train_rows, val_shard = rows or worker.read_rows(training_set, rank, world, device)
    train_shard = to_device(train_rows, state.model, device)
    timings["time_ingest_s"] = time.perf_counter() - start
    start = time.perf_counter()
    graphed = None
    if graphs:
        graphed = step.GraphedStep(
            state.model, state.optimizer, train_shard, cfg.batch_size, cfg.dtype,
            cfg.optim.grad_clip_max_norm, torch.Generator(device=device),
        )  # fmt: skip
    timings["time_graph_warmup_s"] = time.perf_counter() - start
    validator = None
    if rank == 0:
        validator = BackgroundValidation(
            _validation_model(state.model), val_shard,
            training_set.val_annotations, training_set.class_names, cfg.dtype,
            cfg.val_batch_size, skip=final_eval.CONSTANTS,
        )  # fmt: skip
    ending = EpochEnding(state, cfg, rank, validator, loop_config, timings, pool)
    pending: deque[tuple[dict[str, Any], dict[str, Any] | None]] = deque()  # to finish
    try:
        while state.epoch < last_epoch(cfg):
            if validator is not None and graphed is not None and graphed.needs_capture():
                validator.wait()  # a capture admits no other work on the device
            metrics = run_epoch(state, net, train_shard, cfg, rank, world, graphed)
            state.scheduler.step()
            state.epoch += 1
            metrics["epoch"] = state.epoch
            start = time.perf_counter()
            pending.append((metrics, state_to_save(state) if rank == 0 else None))
            if validator is not None:
                validator.submit(state.model)
            timings[SNAPSHOT_SECONDS] = timings.get(SNAPSHOT_SECONDS, 0.0) + (
                time.perf_counter() - start
            )
            # the epochs validated meanwhile (rank 0 validates; every rank finishes as many)
            for _ in range(_broadcast(validator.done() if validator is not None else 0)):
                ending.finish(*pending.popleft())
        while pending:
            ending.finish(*pending.popleft())
    finally:
        if validator is not None:
            validator.close()
        if pool is not None:
            pool.close()


def _validation_model(model: BMNNet) -> BMNNet:
    """The model that rank 0 validates on: a copy (on the device, in the same layout) that
    takes the trained one's weights each epoch."""
    return deepcopy(model).requires_grad_(False).eval()


class EpochEnding:
    """What follows an epoch once its validation is in: the metrics broadcast, the history,
    the best epoch, (rank 0, after the last epoch) the final task, and the report with its
    checkpoint. Runs once the validation is done, epochs later while the next ones train
    (:class:`core.train.evaluation.BackgroundValidation`), for all epochs in their order;
    ``snapshot`` is the train state as the epoch left it (:func:`state_to_save`), completed
    with the epoch's entry."""

    def __init__(self, state, cfg, rank, validator, loop_config, timings, pool=None) -> None:
        self.state, self.cfg, self.rank, self.validator = state, cfg, rank, validator
        self.loop_config, self.timings, self.pool = loop_config, timings, pool
        self.best = BestEpoch.from_history(cfg.checkpoint.score, state.history)

    def finish(self, metrics: dict[str, Any], snapshot: dict[str, Any] | None) -> None:
        cfg, epoch, evaluation, val = self.cfg, metrics["epoch"], None, None
        if self.validator is not None:
            start = time.perf_counter()
            evaluation, val = self.validator.result()
            val = {**val, "val_wait_seconds": time.perf_counter() - start}
        metrics.update(_broadcast(val))
        entry = {k: v for k, v in metrics.items() if _is_number(v)}
        self.state.history.append(entry)
        if snapshot is not None:
            snapshot["history"].append(dict(entry))
        if self.rank == 0:
            self.best.offer(epoch, metrics, snapshot["model"], evaluation)
            if epoch == cfg.epochs and self.best.in_memory:
                start = time.perf_counter()
                sha = final_eval.write_outputs(
                    self.best, self.state.history, self.loop_config["model_cfg"],
                    self.loop_config["training_set"], self.loop_config["output_uri"], cfg,
                    self.pool,
                )  # fmt: skip
                metrics.update({FINAL_TASK: 1, "best_epoch": self.best.epoch, "best_sha256": sha})
                self.timings["time_final_task_s"] = time.perf_counter() - start
            self.timings[warm.DYNAMO_IMPORTED] = float("torch._dynamo" in sys.modules)
            metrics.update(self.timings)
        start = time.perf_counter()
        _report(snapshot, metrics, self.rank)
        elapsed = time.perf_counter() - start
        self.timings["time_report_s"] = self.timings.get("time_report_s", 0.0) + elapsed


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
