"""The train job's config schema (``configs/train/*.py``), checked by :func:`core.config.load`.

Defaults are MMAction2's BMN ActivityNet recipe (``bmn_2xb8-400x100-9e_activitynet-feature``):
Adam lr 1e-3, weight decay 1e-4, 9 epochs, the learning rate times 0.1 from epoch 7, global
batch 16, gradient norm clipped at 40, validation every epoch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from core.config import StorageSection

# Keys that may differ between a run and its --resume: they change when or where the run
# stops, never the numbers it produces.
RUNTIME_KEYS = ("stop_after_epoch", "max_failures", "scaling", "storage", "final_eval")


@dataclasses.dataclass
class DataSection:
    """Which annotated videos train and which validate.

    Official ActivityNet v1.3 annotations (and the synthetic corpus) name each video's subset:
    ``train_subset`` trains, ``val_subset`` validates. MMAction2's ``anet_anno_*.json`` files
    hold one subset each: give the training file as ``--annotations`` and the validation file
    as ``val_annotations`` to reproduce MMAction2's run. A file without subsets and no
    ``val_annotations`` is split by ``val_fraction``: a video validates when the hash of its
    id falls below it (stable across runs, machines and file order).
    """

    train_subset: str = "training"
    val_subset: str = "validation"
    val_annotations: str | None = None
    """URI of a separate validation annotations file (e.g. MMAction2's anet_anno_val.json)."""
    val_fraction: float = 0.1
    """Share of videos that validate when the annotations carry no subsets."""
    classes: list[str] | None = None
    """Label order of the action head; None: the annotation file's ``classes`` list, else the
    sorted labels of the training and validation videos."""


@dataclasses.dataclass
class OptimSection:
    """Adam with a step schedule by epoch (MMAction2's ``optim_wrapper`` + ``MultiStepLR``)."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip_max_norm: float | None = 40.0
    """Clip the gradients' global L2 norm; None: no clipping."""
    milestones: list[int] = dataclasses.field(default_factory=lambda: [7])
    """Epochs after which the learning rate is multiplied by ``gamma``."""
    gamma: float = 0.1


@dataclasses.dataclass
class ScalingSection:
    """Ray Train workers (``--num-workers`` / ``--use-gpu`` override these)."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: int = 1


@dataclasses.dataclass
class CheckpointKeepSection:
    """Which Ray Train checkpoints a run keeps (``checkpoint`` in the train config)."""

    num_to_keep: int | None = 2
    """Ray Train checkpoints kept besides the latest (the best by ``score``); None: all."""
    score: Literal["AUC", "AR@100", "mAP"] = "AUC"
    """The validation metric that picks the best checkpoint (exported as ``best.pth``)."""


@dataclasses.dataclass
class TrainConfig:
    """The train job's config schema."""

    model: dict[str, Any]
    """MMAction2-style ``BMNwActionCls`` dict; ``num_action_classes=None`` takes the number of
    classes from the annotations."""
    epochs: int = 9
    batch_size: int = 16
    """Global batch: each of N workers takes ``batch_size / N`` (must divide)."""
    val_batch_size: int = 32
    """Videos per forward pass in validation (rank 0 only)."""
    optim: OptimSection = dataclasses.field(default_factory=OptimSection)
    data: DataSection = dataclasses.field(default_factory=DataSection)
    scaling: ScalingSection = dataclasses.field(default_factory=ScalingSection)
    checkpoint: CheckpointKeepSection = dataclasses.field(default_factory=CheckpointKeepSection)
    storage: StorageSection = dataclasses.field(default_factory=StorageSection)
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    """Autocast dtype of the forward pass on CUDA; the CPU always runs float32."""
    seed: int = 0
    """Seeds the weights, and with the epoch every data order and loss sampling."""
    max_failures: int = 2
    """Worker-group restarts (from the last checkpoint) before the run fails."""
    stop_after_epoch: int | None = None
    """Stop cleanly after this many epochs in total, like a preemption; ``--resume`` goes on."""
    final_eval: bool = True
    """Run the final evaluation task (metrics.json, plots) after training."""


def validate_train_config(cfg: TrainConfig) -> None:
    """Checks the values a schema cannot (raises ValueError naming the key)."""
    if cfg.epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {cfg.epochs}")
    if cfg.batch_size < 1 or cfg.val_batch_size < 1:
        raise ValueError("batch_size and val_batch_size must be >= 1")
    if cfg.scaling.num_workers < 1:
        raise ValueError(f"scaling.num_workers must be >= 1, got {cfg.scaling.num_workers}")
    if cfg.batch_size % cfg.scaling.num_workers:
        raise ValueError(
            f"batch_size {cfg.batch_size} (global) is not divisible by {cfg.scaling.num_workers} "
            "workers: the global batch stays fixed, each worker takes batch_size / num_workers"
        )
    if not 0.0 <= cfg.data.val_fraction < 1.0:
        raise ValueError(f"data.val_fraction must be in [0, 1), got {cfg.data.val_fraction}")
    if cfg.stop_after_epoch is not None and cfg.stop_after_epoch < 1:
        raise ValueError(f"stop_after_epoch must be >= 1, got {cfg.stop_after_epoch}")
    if cfg.max_failures < 0:
        raise ValueError(f"max_failures must be >= 0, got {cfg.max_failures}")


def fingerprint_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as a plain dict without :data:`RUNTIME_KEYS`: two runs with equal
    fingerprints produce the same numbers (what ``--resume`` checks)."""
    out = dataclasses.asdict(cfg)
    for key in RUNTIME_KEYS:
        out.pop(key, None)
    return out
