"""Training the detect job's two models on annotated keyframes (:mod:`core.detect.train_data`).

Small models on a CPU in minutes (``configs/detect/train_demo.py`` trains the demo config's
two): the models are built exactly as the job builds them (:mod:`core.detect.models`, from the
same detect config), so the checkpoints written here load into ``jobs.detect`` with
``detector.checkpoint=`` and ``action.checkpoint=``.

* the **person detector** (an mmdet two-stage detector, e.g. Faster R-CNN) learns from the
  keyframes and their person boxes through mmdet's own training pipeline (the job's test
  pipeline with a random horizontal flip, ``DetDataPreprocessor``, the model's ``loss``) with
  the ``train_cfg`` (assigners, samplers) the training config gives it;
* the **action model** (MMAction2's ``FastRCNN``: SlowOnly + ``AVARoIHead``) learns from the
  clips, with the ground-truth boxes (and slightly jittered copies) as its proposals, as
  MMAction2 trains on AVA; clips are normalised by the code the job uses
  (:func:`core.detect.models.clips_to_input`).

Both use AdamW with a linear warm-up and a cosine decay over ``iterations``; a run stops
early at ``max_seconds`` (logged) so that a demo stays bounded.

Shape legend: B keyframes or clips in a batch, N persons, C action classes (81 for AVA).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from core.detect.config import ActionSection, DetectorSection
from core.detect.train_data import KeyframeSample

log = logging.getLogger(__name__)


def _positive(section: object, *names: str) -> None:
    for name in names:
        if getattr(section, name) <= 0:
            raise ValueError(f"{name} must be > 0, got {getattr(section, name)!r}")


@dataclasses.dataclass
class FitSection:
    """How long and how fast one model trains (``detector`` / ``action`` of a training config)."""

    iterations: int = 300
    """Optimiser steps (the learning-rate schedule spans them)."""
    batch_size: int = 4
    """Keyframes (detector) or clips (action model) per step."""
    lr: float = 1e-3
    """AdamW's peak learning rate."""
    weight_decay: float = 1e-4
    warmup: int = 20
    """Steps of linear warm-up from ``lr / 10``."""
    max_seconds: float = 300.0
    """Stop early after this many seconds of training (a bounded demo); the schedule does not
    shrink, so a run cut short ends at a higher learning rate."""
    log_every: int = 25
    """Log the mean loss of every this many steps."""

    def __post_init__(self) -> None:
        _positive(self, "iterations", "batch_size", "lr", "max_seconds", "log_every")
        if self.warmup < 0 or self.weight_decay < 0:
            raise ValueError("warmup and weight_decay must be >= 0")


@dataclasses.dataclass
class DetectorFit(FitSection):
    """The person detector's training: the fit settings and the model's ``train_cfg``."""

    train_cfg: dict[str, Any] = dataclasses.field(default_factory=dict)
    """mmdet's ``train_cfg`` of the model (``rpn``, ``rpn_proposal``, ``rcnn``: assigners and
    samplers), which the inference config leaves out."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.train_cfg:
            raise ValueError("detector.train_cfg is required (the model's assigners, samplers)")


@dataclasses.dataclass
class ActionFit(FitSection):
    """The action model's training."""

    jittered_proposals: int = 2
    """Proposals per person besides its ground-truth box: the box with each side moved by up
    to ``jitter`` of its size (those overlapping it enough count as that person)."""
    jitter: float = 0.03


@dataclasses.dataclass
class TrainDetectConfig:
    """Schema of a detect training config (``configs/detect/train_*.py``)."""

    detect_config: str
    """The detect config whose models are trained (its ``detector``, ``action``, ``sampling``)."""
    detector: DetectorFit
    action: ActionFit
    seed: int = 0
    """Seeds the initial weights, the batches and the augmentation."""
    num_threads: int = 0
    """torch threads for training (0 = torch's default)."""


@dataclasses.dataclass
class FitResult:
    model: torch.nn.Module
    losses: list[float]
    seconds: float
    iterations: int
    stopped_early: bool


def _lr_factor(step: int, fit: FitSection) -> float:
    if step < fit.warmup:
        return 0.1 + 0.9 * step / max(1, fit.warmup)
    span = max(1, fit.iterations - fit.warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - fit.warmup) / span)))


def fit_loop(
    model: torch.nn.Module,
    loss_of_batch: Callable[[list[int], np.random.Generator], dict],
    num_samples: int,
    fit: FitSection,
    seed: int,
    name: str,
) -> FitResult:
    """AdamW over shuffled batches of sample indices; ``loss_of_batch`` returns the model's
    loss dict (mmengine's ``parse_losses`` sums its ``loss*`` entries)."""
    rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=fit.lr, weight_decay=fit.weight_decay)
    model.train()
    losses: list[float] = []
    order = rng.permutation(num_samples)
    pos, t0 = 0, time.perf_counter()
    stopped_early = False
    for step in range(fit.iterations):
        if time.perf_counter() - t0 > fit.max_seconds:
            stopped_early = True
            log.warning("%s: stopped at step %d of %d (max_seconds=%s)", name, step,
                        fit.iterations, fit.max_seconds)  # fmt: skip
            break
        if pos + fit.batch_size > num_samples:
            order, pos = rng.permutation(num_samples), 0
        batch = order[pos : pos + fit.batch_size].tolist()
        pos += fit.batch_size
        for group in optim.param_groups:
            group["lr"] = fit.lr * _lr_factor(step, fit)
        loss, _ = model.parse_losses(loss_of_batch(batch, rng))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optim.step()
        losses.append(float(loss.detach()))
        if (step + 1) % fit.log_every == 0:
            log.info("%s step %d/%d: loss %.4f (%.0f s)", name, step + 1, fit.iterations,
                     float(np.mean(losses[-fit.log_every :])), time.perf_counter() - t0)  # fmt: skip
    model.eval()
    return FitResult(model, losses, time.perf_counter() - t0, len(losses), stopped_early)


# ----------------------------------------------------------------------------- the detector


def build_trainable_detector(section: DetectorSection, fit: DetectorFit, seed: int):
    """The job's detector (:class:`core.detect.models.PersonDetector`'s model) with
    ``fit.train_cfg`` set, and mmdet's training pipeline for RGB keyframes with boxes."""
    import mmdet.models  # noqa: F401  (registers mmdet's modules)
    from mmcv.transforms import Compose
    from mmdet.apis import init_detector

    from core.detect.models import detector_config

    cfg = detector_config(section)
    cfg.model.train_cfg = copy.deepcopy(fit.train_cfg)
    torch.manual_seed(seed)
    model = init_detector(cfg, checkpoint=None, palette="random", device="cpu")
    test = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
    pipeline = Compose(
        [
            dict(type="mmdet.LoadImageFromNDArray"),
            test[1],  # the job's Resize
            dict(type="mmdet.RandomFlip", prob=0.5),
            dict(
                type="mmdet.PackDetInputs",
                meta_keys=(*test[2]["meta_keys"], "flip", "flip_direction"),
            ),  # fmt: skip
        ]
    )
    return model, pipeline


def fit_detector(
    section: DetectorSection,
    fit: DetectorFit,
    samples: list[KeyframeSample],
    seed: int,
    start: str | None = None,
    allow_pickle: bool = False,
) -> FitResult:
    """Trains the person detector on the keyframes' person boxes (class ``category_id``),
    from seeded random weights or the checkpoint ``start``."""
    from mmdet.structures.bbox import HorizontalBoxes

    from core.detect.models import load_weights

    model, pipeline = build_trainable_detector(section, fit, seed)
    if start:
        load_weights(model, start, allow_pickle)

    def loss_of_batch(batch: list[int], rng: np.random.Generator) -> dict:
        packed = []
        for i in batch:
            s = samples[i]
            H, W = s.keyframe_HW3.shape[:2]
            boxes_px = s.boxes_N4 * np.asarray([W, H, W, H], np.float32)
            n = len(boxes_px)
            packed.append(
                pipeline(
                    dict(
                        img=np.ascontiguousarray(s.keyframe_HW3[..., ::-1]),  # BGR, as the job
                        img_id=i,
                        gt_bboxes=HorizontalBoxes(boxes_px),
                        gt_bboxes_labels=np.full(n, section.category_id, np.int64),
                        gt_ignore_flags=np.zeros(n, bool),
                    )
                )
            )
        data = model.data_preprocessor(
            {"inputs": [p["inputs"] for p in packed],
             "data_samples": [p["data_samples"] for p in packed]}, training=True,
        )  # fmt: skip
        return model(**data, mode="loss")

    return fit_loop(model, loss_of_batch, len(samples), fit, seed, "detector")


# ----------------------------------------------------------------------------- the action model


def _jittered(box_4: np.ndarray, count: int, jitter: float, rng: np.random.Generator, w: int,
              h: int) -> np.ndarray:  # fmt: skip
    size = np.asarray([box_4[2] - box_4[0], box_4[3] - box_4[1]] * 2, np.float32)
    out = box_4[None] + rng.uniform(-jitter, jitter, (count, 4)).astype(np.float32) * size
    return np.clip(out, 0, [w, h, w, h]).astype(np.float32)


def fit_action_model(
    section: ActionSection,
    fit: ActionFit,
    samples: list[KeyframeSample],
    seed: int,
    start: str | None = None,
    allow_pickle: bool = False,
) -> FitResult:
    """Trains the action model on the clips, the persons' boxes and their action ids, from
    seeded random weights or the checkpoint ``start``."""
    from mmaction.structures import ActionDataSample
    from mmengine.structures import InstanceData

    from core.detect.models import (
        build_action_model,
        clips_to_input,
        load_weights,
        preprocessor_stats,
    )  # fmt: skip

    model = build_action_model(section, seed)
    if start:
        load_weights(model, start, allow_pickle)
    mean_C, std_C = preprocessor_stats(section, torch.device("cpu"))
    num_classes = int(section.model["roi_head"]["bbox_head"]["num_classes"])
    bad = {a for s in samples for acts in s.actions for a in acts if not 0 < a < num_classes}
    if bad:
        raise ValueError(f"action ids {sorted(bad)} are outside the model's 1..{num_classes - 1}")

    def loss_of_batch(batch: list[int], rng: np.random.Generator) -> dict:
        clips, data_samples = [], []
        for i in batch:
            s = samples[i]
            clip = s.clip_Thw3
            h, w = clip.shape[1:3]
            boxes = s.boxes_N4 * np.asarray([w, h, w, h], np.float32)
            if rng.random() < 0.5:  # horizontal flip: actions do not change
                clip = clip[:, :, ::-1]
                boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
            onehot = torch.zeros(len(boxes), num_classes)
            for p, acts in enumerate(s.actions):
                onehot[p, acts] = 1.0
            props = [boxes] + [_jittered(b, fit.jittered_proposals, fit.jitter, rng, w, h)
                               for b in boxes]  # fmt: skip
            sample = ActionDataSample()
            sample.set_metainfo(dict(img_shape=(h, w)))
            sample.gt_instances = InstanceData(bboxes=torch.from_numpy(boxes), labels=onehot)
            sample.proposals = InstanceData(bboxes=torch.from_numpy(np.concatenate(props)))
            clips.append(np.ascontiguousarray(clip))
            data_samples.append(sample)
        x = clips_to_input(torch.from_numpy(np.stack(clips)), section.channel_order, mean_C, std_C)
        return model.loss(x, data_samples)

    return fit_loop(model, loss_of_batch, len(samples), fit, seed, "action")


def checkpoint_state(result: FitResult, kind: str, meta: dict[str, Any]) -> dict[str, Any]:
    """What :func:`core.io.checkpoint.save_checkpoint` writes: weights and plain metadata
    (loadable without unpickling)."""
    return {
        "state_dict": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
        "meta": {
            "kind": kind,
            "iterations": result.iterations,
            "seconds": round(result.seconds, 2),
            "loss_first": result.losses[0] if result.losses else None,
            "loss_last": result.losses[-1] if result.losses else None,
            **meta,
        },
    }


# ----------------------------------------------------------------------------- a training run


def run_training(
    cfg: TrainDetectConfig,
    videos: list,
    annotations_uri: str,
    output_uri: str,
    resolved_config_text: str,
) -> dict[str, Any]:
    """Trains both models of ``cfg.detect_config`` and writes ``OUTPUT/detector.pth``,
    ``OUTPUT/action.pth``, ``OUTPUT/history.json`` (every step's loss) and
    ``OUTPUT/config.py``. A model whose detect config names a checkpoint starts from it.

    Returns:
        The summary (also in ``history.json``).
    """
    from core import config, storage
    from core.detect.config import DetectConfig
    from core.detect.train_data import load_samples
    from core.io.checkpoint import save_checkpoint

    t0 = time.perf_counter()
    detect_cfg, _ = config.load(cfg.detect_config, DetectConfig)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    storage.write_text(storage.join(output_uri, "config.py"), resolved_config_text)
    samples = load_samples(
        videos, annotations_uri, detect_cfg.sampling, detect_cfg.detector.short_side
    )
    meta = {"detect_config": cfg.detect_config, "annotations": annotations_uri,
            "num_keyframes": len(samples), "seed": cfg.seed}  # fmt: skip
    summary: dict[str, Any] = {"num_videos": len({s.video_id for s in samples}), **meta}
    for kind, fit in (("detector", fit_detector), ("action", fit_action_model)):
        section = getattr(detect_cfg, kind)
        fit_cfg = getattr(cfg, kind)
        if section.checkpoint:
            log.info("%s starts from %s", kind, section.checkpoint)
        result = fit(section, fit_cfg, samples, cfg.seed, start=section.checkpoint,
                     allow_pickle=detect_cfg.checkpoint.allow_pickle)  # fmt: skip
        uri = storage.join(output_uri, f"{kind}.pth")
        sha256 = save_checkpoint(checkpoint_state(result, kind, meta), uri)
        k = max(1, min(fit_cfg.log_every, len(result.losses) // 4))
        summary[kind] = {
            "checkpoint": uri,
            "sha256": sha256,
            "iterations": result.iterations,
            "stopped_early": result.stopped_early,
            "seconds": round(result.seconds, 2),
            "loss_first_mean": float(np.mean(result.losses[:k])),
            "loss_last_mean": float(np.mean(result.losses[-k:])),
            "losses": [round(v, 5) for v in result.losses],
        }
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    storage.write_json(storage.join(output_uri, "history.json"), summary)
    return summary
