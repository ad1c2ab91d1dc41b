"""The training loop: model, optimizer, one epoch, validation, train state; and the Ray Train
worker function that strings them together.

Everything but :func:`train_loop_per_worker` runs without Ray (unit tests call it on tiny
tensors). Randomness is derived from ``(seed, epoch, rank)`` at the start of every epoch (data
order, the PEM loss sampling, torch's global generator), so an epoch computes the same thing
whether the run was interrupted before it or not; the train state holds weights, optimizer,
scheduler, epochs done and the per-epoch history.

Shape legend: B batch, C channels, T positions, G segments per video.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from core.models import BMNwActionCls, build_bmn_cls, pad_ground_truth
from core.models.localizer import Localizer
from core.train import data
from core.train.config import OptimSection, TrainConfig
from core.train.evaluation import validation_metrics

log = logging.getLogger(__name__)

STATE_FILE = "train_state.pt"
SAMPLING_STREAM, TORCH_STREAM = 1, 2


@dataclasses.dataclass
class TrainState:
    """What a checkpoint restores."""

    model: BMNwActionCls
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    epoch: int = 0
    """Epochs done."""
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """One dict of losses and validation metrics per epoch done."""


def build_model(model_cfg: Mapping[str, Any], seed: int) -> BMNwActionCls:
    """The model with weights drawn from ``seed`` (the same on every worker)."""
    torch.manual_seed(seed)
    return build_bmn_cls(model_cfg)


def build_optimizer(
    model: nn.Module, cfg: OptimSection
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam over the trainable parameters and a step schedule stepped once per epoch."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.milestones, cfg.gamma)
    return optimizer, scheduler


def new_train_state(model_cfg: Mapping[str, Any], cfg: TrainConfig, device: str) -> TrainState:
    model = build_model(model_cfg, cfg.seed).to(device)
    optimizer, scheduler = build_optimizer(model, cfg.optim)
    return TrainState(model, optimizer, scheduler)


def state_to_save(state: TrainState) -> dict[str, Any]:
    """Plain tensors and containers (loads with ``torch.load(weights_only=True)``)."""
    return {
        "model": {k: v.detach().cpu() for k, v in state.model.state_dict().items()},
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "epoch": state.epoch,
        "history": list(state.history),
        "torch_rng": torch.get_rng_state(),  # for the record: each epoch reseeds
    }


def restore_state(state: TrainState, saved: Mapping[str, Any]) -> None:
    """Loads a :func:`state_to_save` dict into a freshly built state (same config)."""
    state.model.load_state_dict(saved["model"], strict=True)
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    state.epoch = int(saved["epoch"])
    state.history = list(saved["history"])


def save_state_file(state: TrainState, directory: str) -> str:
    path = os.path.join(directory, STATE_FILE)
    torch.save(state_to_save(state), path)
    return path


def load_state_file(directory: str) -> dict[str, Any]:
    return torch.load(os.path.join(directory, STATE_FILE), map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------- one epoch


def autocast_for(device: torch.device, dtype: str):
    """bf16 autocast on CUDA when asked; float32 elsewhere."""
    if device.type == "cuda" and dtype == "bfloat16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@dataclasses.dataclass
class DeviceShard:
    """A worker's training rows ready for its device: the features are copied to the GPU once
    (a zero-copy view on the CPU), ground truth stays small host arrays."""

    feats_NCT: torch.Tensor
    gt: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.gt)


def to_device(shard: data.ShardArrays, device: torch.device | str) -> DeviceShard:
    return DeviceShard(torch.from_numpy(shard.feats_NCT).to(device), shard.gt)


def batch_tensors(
    shard: DeviceShard, idx_B: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """feats_BCT (float32), gt_BG2 (float64, normalised), valid_BG, labels_BG of some rows,
    on the features' device (ground truth padded on the host, then moved in one copy each)."""
    device = shard.feats_NCT.device
    feats_BCT = shard.feats_NCT[torch.from_numpy(idx_B).to(device)]
    segments = [torch.from_numpy(shard.gt[i][:, :2]) for i in idx_B]
    labels = [torch.from_numpy(shard.gt[i][:, 2].astype(np.int64)) for i in idx_B]
    padded = pad_ground_truth(segments, labels, "cpu")
    gt_BG2, valid_BG, labels_BG = (t.to(device, non_blocking=True) for t in padded)
    return feats_BCT, gt_BG2, valid_BG, labels_BG


def train_epoch(
    net: nn.Module,
    model: BMNwActionCls,
    optimizer: torch.optim.Optimizer,
    shard: DeviceShard,
    batches: list[np.ndarray],
    *,
    dtype: str = "float32",
    grad_clip: float | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """One pass over ``batches`` of the shard; returns the mean of each loss over the steps.

    Args:
        net: what runs forward (the model, or DistributedDataParallel around it).
        model: the model itself (targets and losses).
    """
    net.train()
    sums: dict[str, torch.Tensor] = {}
    for idx_B in batches:
        feats_BCT, gt_BG2, valid_BG, labels_BG = batch_tensors(shard, idx_B)
        targets = model.make_targets(gt_BG2, valid_BG, labels_BG)
        with autocast_for(feats_BCT.device, dtype):
            outputs = net(feats_BCT)
        losses = model.compute_loss(outputs, targets, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        for key, value in losses.items():  # summed on the device: no sync per step
            sums[key] = sums.get(key, 0.0) + value.detach().float()
    if not sums:
        return {}
    keys = sorted(sums)
    means = (torch.stack([sums[k] for k in keys]) / len(batches)).tolist()
    return dict(zip(keys, means, strict=True))


def validate(
    state: TrainState,
    shard: data.ShardArrays,
    training_set: data.TrainingSet,
    dtype: str,
    batch_size: int,
) -> dict[str, float]:
    """Headline metrics of the current weights on the validation videos (then back to train)."""
    device = next(state.model.parameters()).device
    localizer = Localizer(state.model, training_set.class_names, str(device), dtype)
    try:
        return validation_metrics(localizer, shard, training_set.val_annotations, batch_size)
    finally:
        state.model.train()


def seed_epoch(seed: int, epoch: int, rank: int, device: torch.device) -> torch.Generator:
    """Reseeds torch's global generator and returns the PEM sampling generator of this epoch."""
    torch.manual_seed(data.torch_seed(seed, epoch, rank, TORCH_STREAM))
    generator = torch.Generator(device=device)
    generator.manual_seed(data.torch_seed(seed, epoch, rank, SAMPLING_STREAM))
    return generator


def last_epoch(cfg: TrainConfig) -> int:
    """Epochs done when this run ends: all, or ``stop_after_epoch`` if that comes first."""
    return cfg.epochs if cfg.stop_after_epoch is None else min(cfg.epochs, cfg.stop_after_epoch)


def steps_per_epoch(num_rows: int, per_worker_batch: int) -> int:
    return num_rows // per_worker_batch


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


def _report(state: TrainState, metrics: dict[str, Any], rank: int) -> None:
    import ray.train

    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="bmn-ckpt-") as directory:
        save_state_file(state, directory)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def run_epoch(
    state: TrainState,
    net: nn.Module,
    train_shard: DeviceShard,
    cfg: TrainConfig,
    rank: int,
    world: int,
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
    generator = seed_epoch(cfg.seed, state.epoch, rank, device)
    start = time.perf_counter()
    losses = train_epoch(
        net, state.model, state.optimizer, train_shard, batches,
        dtype=cfg.dtype, grad_clip=cfg.optim.grad_clip_max_norm, generator=generator,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    keys = sorted(losses)
    mean = [v / world for v in _all_reduce([losses[k] for k in keys], "sum", device)]
    out = dict(zip(keys, mean, strict=True))
    out.update(train_seconds=seconds, samples_per_s=steps * cfg.batch_size / seconds)
    out.update(steps=steps, lr=state.optimizer.param_groups[0]["lr"])
    return out


def _collect_shards(
    training_set: data.TrainingSet, rank: int
) -> tuple[data.ShardArrays, data.ShardArrays | None]:
    """This worker's training shard (Ray Data) and, on rank 0, the whole validation set."""
    import ray.train

    batches = ray.train.get_dataset_shard(data.TRAIN).iter_batches(batch_format="pyarrow")
    train = data.collect_shard(batches, training_set.C, training_set.T)
    val = data.read_split_features(training_set, data.VAL) if rank == 0 else None
    return train, val


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train's worker function: restore, train epoch by epoch, validate, checkpoint.

    ``loop_config``: ``cfg`` (TrainConfig), ``model_cfg`` (the resolved model dict),
    ``training_set`` (:class:`core.train.data.TrainingSet`).
    """
    import ray.train
    import ray.train.torch

    cfg: TrainConfig = loop_config["cfg"]
    training_set: data.TrainingSet = loop_config["training_set"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    state = new_train_state(loop_config["model_cfg"], cfg, str(device))
    _restore_from_ray(state)
    net = ray.train.torch.prepare_model(state.model)
    train_rows, val_shard = _collect_shards(training_set, rank)
    train_shard = to_device(train_rows, device)
    while state.epoch < last_epoch(cfg):
        metrics = run_epoch(state, net, train_shard, cfg, rank, world)
        val = None
        if rank == 0:
            start = time.perf_counter()
            val = validate(state, val_shard, training_set, cfg.dtype, cfg.val_batch_size)
            val["val_seconds"] = time.perf_counter() - start
        metrics.update(_broadcast(val))
        state.scheduler.step()
        state.epoch += 1
        metrics["epoch"] = state.epoch
        state.history.append({k: v for k, v in metrics.items() if _is_number(v)})
        _report(state, metrics, rank)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
