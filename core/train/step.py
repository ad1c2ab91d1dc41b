"""One optimizer step over a worker's shard on its device: eager, or replayed as a CUDA graph.

A worker's rows move to its device once (:func:`to_device`), together with every video's
training targets, computed once by the model's own ``make_targets`` (they depend on the ground
truth alone, so a step only gathers its rows). A step is then: gather the batch, forward under
autocast, BMN's and the head's losses, backward, gradient clipping, Adam.

On one CUDA device without DDP the whole step is captured once as a CUDA graph
(:class:`GraphedStep`) and replayed for every batch: one launch per step instead of several
hundred, which at the recipe's batch of 16 is what bounds the eager loop (the GPU idles between
small kernels). The capture needs warm-up steps; they run on a copy-and-restore of the weights,
optimizer state and batch-norm statistics, so the state after capture is the state before. The
PEM loss's sampling generator is registered with the graph and reseeded every epoch, as in the
eager loop. Adam runs inside the graph (``capturable=True``, one fused kernel) with its
learning rate in a device tensor that the schedule updates in place, so a new rate needs no
new capture (a float rate would be baked into the captured kernels: the graph is captured
again when it changes). On CUDA the boundary-matching output and ``x_2d_p``'s convolutions
run channels-last (:func:`use_channels_last`), the layout bf16 convolutions are fastest in.

Shape legend: N rows of the shard, B batch, C channels, T positions, G segments per video.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from core.models import BMNNet, pad_ground_truth
from core.models.targets import BMNTargets
from core.train import data

log = logging.getLogger(__name__)

TARGET_CHUNK = 512  # videos per make_targets call when a shard moves to its device


def autocast_for(device: torch.device, dtype: str, cache: bool = True):
    """bf16 autocast on CUDA when asked; float32 elsewhere (no weight cache inside graphs)."""
    if device.type == "cuda" and dtype == "bfloat16":
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache)
    return nullcontext()


@dataclasses.dataclass
class DeviceShard:
    """A worker's training rows on its device: features and every video's targets.

    Attributes:
        feats_NCT: float32 features.
        targets: :class:`BMNTargets` with a leading N axis (None fields stay None).
    """

    feats_NCT: torch.Tensor
    targets: BMNTargets

    def __len__(self) -> int:
        return self.feats_NCT.shape[0]

    def batch(self, idx_B: torch.Tensor) -> tuple[torch.Tensor, BMNTargets]:
        """feats_BCT and the targets of rows ``idx_B`` (an index tensor on the device)."""
        feats_BCT = self.feats_NCT.index_select(0, idx_B)
        targets = BMNTargets(*(t if t is None else t.index_select(0, idx_B) for t in self.targets))
        return feats_BCT, targets


def shard_targets(model: BMNNet, gt: list[np.ndarray], device: torch.device) -> BMNTargets:
    """Targets of every video, computed in chunks by the model on the device.

    The ground truth is padded to the shard's most segments; padded segments are masked out,
    so every video's targets equal those of any batch it is drawn into.
    """
    if not gt:
        raise data.TrainDataError("a worker holds no training videos")
    G = max(len(g) for g in gt)
    parts = []
    for start in range(0, len(gt), TARGET_CHUNK):
        chunk = gt[start : start + TARGET_CHUNK]
        # copies: rows that came through Ray's object store are read-only arrays
        segments = [torch.tensor(g[:, :2]) for g in chunk] + [torch.zeros(G, 2).double()]
        labels = [torch.from_numpy(g[:, 2].astype(np.int64)) for g in chunk]
        labels.append(torch.full((G,), -1))  # a row of G segments pads the chunk to G
        padded = pad_ground_truth(segments, labels)
        gt_BG2, valid_BG, labels_BG = (t[:-1].to(device) for t in padded)
        with torch.no_grad():
            parts.append(model.make_targets(gt_BG2, valid_BG, labels_BG))
    return BMNTargets(*(None if p[0] is None else torch.cat(p) for p in zip(*parts, strict=True)))


def to_device(shard: data.ShardArrays, model: BMNNet, device: torch.device | str) -> DeviceShard:
    """The shard's features on the device (copied once, unless they are there already), with
    their targets."""
    device = torch.device(device)
    feats_NCT = torch.as_tensor(shard.feats_NCT, device=device)
    return DeviceShard(feats_NCT, shard_targets(model, shard.gt, device))


def step_losses(
    net: nn.Module,
    model: BMNNet,
    feats_BCT: torch.Tensor,
    targets: BMNTargets,
    optimizer: torch.optim.Optimizer,
    dtype: str,
    grad_clip: float | None,
    generator: torch.Generator | None,
    cache: bool = True,
) -> dict[str, torch.Tensor]:
    """Forward, losses, backward, clipping and the optimizer step; the losses (on device)."""
    with autocast_for(feats_BCT.device, dtype, cache):
        outputs = net(feats_BCT)
    losses = model.compute_loss(outputs, targets, generator=generator)
    losses["loss"].backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return losses


def use_channels_last(model: BMNNet) -> None:
    """The boundary-matching output and ``x_2d_p``'s convolutions in channels-last memory
    (:attr:`core.models.bm_layer.BoundaryMatchingConv.channels_last`): what bf16
    convolutions on CUDA run fastest in. Call before the optimizer takes its first step."""
    if model.fast_bm_layer is not None:
        model.fast_bm_layer.channels_last = True
        model.x_2d_p.to(memory_format=torch.channels_last)


def graphs_apply(device: torch.device, world: int, model: BMNNet) -> bool:
    """Whether :class:`GraphedStep` can run this model: one CUDA device (no DDP) and a torch
    that registers custom generators with graphs (every head's loss has static shapes)."""
    return (
        device.type == "cuda"
        and world == 1
        and hasattr(torch.cuda.CUDAGraph, "register_generator_state")
    )


class GraphedStep:
    """The whole training step (see the module docstring) as a replayable CUDA graph.

    Args:
        model: trains in place; its parameters and buffers keep their storage.
        optimizer: Adam with ``capturable=True``.
        shard: the rows the steps gather from.
        batch_size: B, fixed.
        generator: the PEM sampling generator; reseed it between epochs, never replace it.
    """

    WARMUP = 2

    def __init__(
        self,
        model: BMNNet,
        optimizer: torch.optim.Optimizer,
        shard: DeviceShard,
        batch_size: int,
        dtype: str,
        grad_clip: float | None,
        generator: torch.Generator,
    ) -> None:
        self.model, self.optimizer, self.shard = model, optimizer, shard
        self.dtype, self.grad_clip, self.generator = dtype, grad_clip, generator
        device = shard.feats_NCT.device
        self.idx_B = torch.arange(batch_size, device=device) % len(shard)
        self.sums: dict[str, torch.Tensor] = {}
        self.graph: torch.cuda.CUDAGraph | None = None
        self.captured_lr: list[float | torch.Tensor] = []
        self._warm_up()

    def _body(self) -> None:
        feats_BCT, targets = self.shard.batch(self.idx_B)
        losses = step_losses(
            self.model, self.model, feats_BCT, targets, self.optimizer, self.dtype,
            self.grad_clip, self.generator, cache=False,
        )  # fmt: skip
        for key, value in losses.items():
            self.sums.setdefault(key, torch.zeros((), device=value.device))
            self.sums[key].add_(value.detach().float())

    def _warm_up(self) -> None:
        """Runs the step a few times on a side stream (lazy inits, cuDNN and cuBLAS choices,
        Adam's state), then puts back the weights, statistics and optimizer state."""
        saved = _snapshot(self.model, self.optimizer)
        rng = self.generator.get_state(), torch.cuda.get_rng_state(), torch.get_rng_state()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(self.WARMUP):
                self.optimizer.zero_grad(set_to_none=True)
                self._body()
        torch.cuda.current_stream().wait_stream(stream)
        _restore(self.model, self.optimizer, saved)
        self.generator.set_state(rng[0])
        torch.cuda.set_rng_state(rng[1])
        torch.set_rng_state(rng[2])

    def _capture(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)  # the graph owns the gradients it writes
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.generator)
        with torch.cuda.graph(graph):
            self._body()
        self.graph = graph
        self.captured_lr = [g["lr"] for g in self.optimizer.param_groups]

    def needs_capture(self) -> bool:
        """Whether the next :meth:`run` captures the step: the first, or a new learning rate
        that the graph does not read (a float baked into the kernels, or another tensor)."""
        now = [g["lr"] for g in self.optimizer.param_groups]
        return len(now) != len(self.captured_lr) or not all(map(_same_lr, now, self.captured_lr))

    def run(self, batches: Iterable[np.ndarray]) -> dict[str, torch.Tensor]:
        """Replays the step for each batch of row indices; the summed losses (on device)."""
        if self.needs_capture():
            self._capture()
        for total in self.sums.values():
            total.zero_()
        device = self.idx_B.device
        batches = list(batches)
        if not batches:
            return {}
        idx_SB = torch.from_numpy(np.stack(batches)).to(device)  # one copy for the epoch
        for idx_B in idx_SB:
            self.idx_B.copy_(idx_B)
            self.graph.replay()
        return {k: v.clone() for k, v in self.sums.items()}


def _same_lr(now: float | torch.Tensor, captured: float | torch.Tensor) -> bool:
    """Whether a captured step still applies ``now``: a tensor rate is the very tensor the
    graph reads (the schedule updates it in place), a float one equals what was baked in."""
    if torch.is_tensor(now) or torch.is_tensor(captured):
        return now is captured
    return now == captured


def _snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    tensors = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    state = {
        id(p): {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
        for p, s in optimizer.state.items()
    }
    return {"model": tensors, "optimizer": state}


@torch.no_grad()
def _restore(model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Copies a :func:`_snapshot` back into the same storage (graphs hold its addresses);
    optimizer state created since (Adam's lazy first step) goes back to a fresh one."""
    for key, value in model.state_dict(keep_vars=True).items():
        value.data.copy_(saved["model"][key])
    for p, state in optimizer.state.items():
        before = saved["optimizer"].get(id(p))
        for key, value in state.items():
            if torch.is_tensor(value):
                value.copy_(before[key]) if before else value.zero_()


def train_epoch(
    net: nn.Module,
    model: BMNNet,
    optimizer: torch.optim.Optimizer,
    shard: DeviceShard,
    batches: list[np.ndarray],
    *,
    dtype: str = "float32",
    grad_clip: float | None = None,
    generator: torch.Generator | None = None,
    graphed: GraphedStep | None = None,
) -> dict[str, float]:
    """One pass over ``batches`` of the shard; returns the mean of each loss over the steps.

    Args:
        net: what runs forward (the model, or DistributedDataParallel around it).
        model: the model itself (targets and losses).
        graphed: replay this captured step instead of running eagerly.
    """
    net.train()
    if graphed is not None:
        sums = graphed.run(batches)
    else:
        sums = {}
        device = shard.feats_NCT.device
        for idx_B in batches:
            feats_BCT, targets = shard.batch(torch.from_numpy(idx_B).to(device))
            optimizer.zero_grad(set_to_none=True)
            losses = step_losses(
                net, model, feats_BCT, targets, optimizer, dtype, grad_clip, generator
            )
            for key, value in losses.items():  # summed on the device: no sync per step
                sums[key] = sums.get(key, 0.0) + value.detach().float()
    if not sums:
        return {}
    keys = sorted(sums)
    means = (torch.stack([sums[k] for k in keys]) / len(batches)).tolist()
    return dict(zip(keys, means, strict=True))
