"""The extract job's config schema (``configs/extract/*.py``), checked by :func:`core.config.load`.

Sections: ``sampling`` (:class:`core.video.SamplingConfig`), ``extractor``
(:class:`core.features.ExtractorConfig`), ``model`` (the localizer's MMAction2-style model dict,
as in jobs.train's config and MMAction2's own configs), ``localizer`` (how it runs),
``pipeline`` (how the stages are laid out on the nodes), ``checkpoint`` and ``storage``
(:mod:`core.config`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from core.config import CheckpointLoadSection, ConfigError, StorageSection
from core.features.config import ExtractorConfig
from core.video import SamplingConfig


@dataclasses.dataclass
class LocalizerSection:
    """How the BMN-with-classification localizer (``model``) runs."""

    MOVED: ClassVar[dict[str, str]] = {"model": "model (top level)"}

    checkpoint: str | None = None
    """URI of a checkpoint written by jobs.train (``best.pth``); None = random weights.
    ``jobs.extract --checkpoint`` overrides it."""
    class_names: list[str] = dataclasses.field(default_factory=list)
    """Names of the action classes; a checkpoint's own list takes precedence."""
    batch_size: int = 64
    """Videos per batched forward pass and post-processing."""
    num_actors: int = 1
    """Localizer actors."""
    num_gpus: float = 0.0
    """GPU share per localizer actor; 0 on CPU."""
    dtype: Literal["float32", "tf32", "bfloat16"] = "float32"
    """Inference precision on CUDA (see :class:`core.models.localizer.Localizer`); the CPU
    runs float32."""


@dataclasses.dataclass
class PipelineSection:
    """How the feature actors share a node's CPUs and its GPU's video decoders.

    The feature actors form one pool: ``extractor.num_actors`` decode on the CPU (one CPU
    each) and ``nvdec_actors_per_node`` more on each GPU node decode with NVDEC
    (``sampling.decoder='nvdec'``). Ray Data hands each video to whichever actor has room,
    so the faster decoders take the larger share, and every video is still committed once.
    """

    nvdec_actors_per_node: int = 0
    """Feature actors per GPU node that decode with NVDEC besides the CPU-decoding ones; 0:
    every actor decodes as ``sampling.decoder`` says."""
    nvdec_num_cpus: float = 0.25
    """CPU that one NVDEC-decoding actor needs (demuxing, cropping on the GPU, the
    recognizer's host side): the pool's actors reserve the average of theirs."""
    calls_per_actor: int = 1
    """Videos a feature actor works on at once, each call in a thread of its own with a
    decoder of its own: while one call waits for the recognizer's GPU batch (or, on an NVDEC
    actor, for the hardware decoder), another decodes, so an actor's core never idles on the
    GPU and an NVDEC actor keeps several decoder sessions busy. 1: one call at a time."""
    cuda_blocking_sync: bool = False
    """Each feature actor's threads sleep while they wait for the GPU instead of spinning on a
    core (:func:`core.pipeline.pools.sleep_on_cuda_waits`), leaving the core to the calls
    that decode."""
    tasks_in_flight_per_actor: int = 2
    """Calls sent to an actor at once, at least ``calls_per_actor`` (those run, the rest wait
    so it never idles); more lengthens the tail, where one actor still works through its
    queue while the others are done."""
    write_num_cpus: float = 0.5
    """CPU that one write task reserves (Parquet encoding and the commit: short bursts)."""
    cpu_decoder_niceness: int = 10
    """Added to a CPU-decoding actor's niceness once it is ready, so that the localizer, the
    write tasks, Ray and the driver get a core at once when they need one; 0 keeps it."""
    warm_up: bool = True
    """Each feature actor runs one recognizer batch, and the localizer one video, while they
    start, so that CUDA's kernels load then rather than in the first videos' calls."""

    def __post_init__(self) -> None:
        if self.nvdec_actors_per_node < 0:
            raise ValueError(
                f"nvdec_actors_per_node must be >= 0, got {self.nvdec_actors_per_node}"
            )
        if not 0 < self.nvdec_num_cpus <= 1:
            raise ValueError(f"nvdec_num_cpus must be in (0, 1], got {self.nvdec_num_cpus}")
        if not 0 <= self.cpu_decoder_niceness <= 19:
            raise ValueError(
                f"cpu_decoder_niceness must be in [0, 19], got {self.cpu_decoder_niceness}"
            )
        if not 0 < self.write_num_cpus <= 1:
            raise ValueError(f"write_num_cpus must be in (0, 1], got {self.write_num_cpus}")
        if self.calls_per_actor < 1:
            raise ValueError(f"calls_per_actor must be >= 1, got {self.calls_per_actor}")
        if self.tasks_in_flight_per_actor < self.calls_per_actor:
            raise ValueError(
                f"tasks_in_flight_per_actor ({self.tasks_in_flight_per_actor}) must be at least "
                f"calls_per_actor ({self.calls_per_actor})"
            )


@dataclasses.dataclass
class ExtractConfig:
    """The extract job's config schema."""

    extractor: ExtractorConfig
    model: dict[str, Any]
    """The localizer: an MMAction2-style ``BMNwActionCls`` dict (``configs/_base_/models/``).
    ``num_action_classes=None`` takes the class count from the checkpoint."""
    localizer: LocalizerSection = dataclasses.field(default_factory=LocalizerSection)
    sampling: SamplingConfig = dataclasses.field(default_factory=SamplingConfig)
    temporal_dim: int = 100
    """T: positions each video's features are rescaled to."""
    pipeline: PipelineSection = dataclasses.field(default_factory=PipelineSection)
    write_batch_size: int = 64
    """Videos per committed Parquet file."""
    seed: int = 0
    """Seeds the random weights of a recognizer or localizer without a checkpoint."""
    max_failed_fraction: float = 0.5
    """The job exits non-zero (after committing what succeeded) when more than this share of
    the videos it processed failed for good."""
    checkpoint: CheckpointLoadSection = dataclasses.field(default_factory=CheckpointLoadSection)
    storage: StorageSection = dataclasses.field(default_factory=StorageSection)


def check_shapes(cfg: ExtractConfig, localizer_model: dict[str, Any]) -> None:
    """The localizer must take what the extractor makes: C from the recognizer's head, T.

    Args:
        cfg: the extract config.
        localizer_model: the model dict that will run (a checkpoint's own, else ``cfg.model``).

    Raises:
        ConfigError: naming the keys that disagree.
    """
    made = cfg.extractor.feature_dim
    wanted = localizer_model.get("feat_dim")
    if made is not None and made != wanted:
        key = "num_classes" if cfg.extractor.output == "scores" else "in_channels"
        raise ConfigError(
            f"extractor.output='{cfg.extractor.output}' makes {made}-d features "
            f"(extractor.model.cls_head.{key}) but the localizer's feat_dim is {wanted}"
        )
    if localizer_model.get("temporal_dim") != cfg.temporal_dim:
        raise ConfigError(
            f"temporal_dim={cfg.temporal_dim} but the localizer's temporal_dim is "
            f"{localizer_model.get('temporal_dim')}"
        )
    if localizer_model.get("num_action_classes", 0) is None:
        raise ConfigError(
            "model.num_action_classes is None (take it from a checkpoint) but no localizer "
            "checkpoint was given: pass --checkpoint or set model.num_action_classes"
        )
