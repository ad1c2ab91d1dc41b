"""The feature actors' pool: how many, what each reserves, which decoder each uses, and where
their time goes.

One pool serves both decoders. ``extractor.num_actors`` actors decode on the CPU and
``pipeline.nvdec_actors_per_node`` more on each GPU node decode with NVDEC; Ray Data gives
every actor of a pool the same resources, so each reserves the pool's average CPU (an NVDEC
actor needs about a quarter of one). Ray Data hands a video to whichever actor has room, so
the decoders share the videos by their speed, and the commit protocol still writes each
video once. An actor learns its decoder when it starts by taking one of its node's NVDEC
slots (a file lock that its process holds until it exits, so a restarted or replaced actor
takes the slot of the one that died); an actor that finds them all taken decodes on the CPU.
A slot holder decodes with NVDEC (``sampling.decoder='auto'``: where it can, else on the CPU).

:class:`FeatureActor` wraps :class:`core.pipeline.stages.SnippetFeatures`: it picks the
decoder, warms the recognizer up while the pool starts, lowers a CPU decoder's priority once
it is ready (``pipeline.cpu_decoder_niceness``: the decoders take every core they can get, and
the localizer, the write tasks, Ray and the driver must not wait behind them; among
themselves, and beside NVDEC actors that must keep their decoder fed, nothing changes; an
actor running several calls at once, ``pipeline.calls_per_actor``, lowers each call's thread),
and adds the seconds and times of each call (:data:`core.pipeline.columns.BUSY_COLUMNS`,
:data:`core.pipeline.columns.TIMES`) and the decoder to the rows.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import tempfile
import threading
import time

import numpy as np

from core.config import ConfigError
from core.pipeline import columns as col
from core.pipeline import stages
from core.pipeline.config import ExtractConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PoolLayout:
    """The feature pool's size and what each of its actors reserves."""

    size: int
    nvdec_per_node: int
    num_cpus: float
    num_gpus: float


def layout(cfg: ExtractConfig, gpu_nodes: int) -> PoolLayout:
    """The pool for ``cfg`` on a cluster with ``gpu_nodes`` GPU nodes.

    Raises:
        ConfigError: NVDEC actors asked for where there is no GPU, or for a recognizer that
            runs on the CPU.
    """
    nvdec = cfg.pipeline.nvdec_actors_per_node
    if nvdec and cfg.extractor.num_gpus == 0:
        raise ConfigError(
            "pipeline.nvdec_actors_per_node > 0 needs the recognizer on the GPU "
            "(extractor.num_gpus > 0)"
        )
    if nvdec and gpu_nodes == 0:
        raise ConfigError("pipeline.nvdec_actors_per_node > 0 but the cluster has no GPU node")
    cpu_actors = cfg.extractor.num_actors
    nvdec_actors = nvdec * gpu_nodes
    size = cpu_actors + nvdec_actors
    cpus = (cpu_actors + nvdec_actors * cfg.pipeline.nvdec_num_cpus) / size
    return PoolLayout(size, nvdec, round(cpus, 4), cfg.extractor.num_gpus)


def gpu_node_count() -> int:
    """Alive nodes with a GPU (Ray must be initialised)."""
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive") and n["Resources"].get("GPU", 0) > 0)


class FeatureActor:
    """Actor: :class:`~core.pipeline.stages.SnippetFeatures` with its decoder chosen, warmed
    up, and timed (input and output rows as ``SnippetFeatures``, plus the seconds columns and
    ``decoder``).

    Args:
        cfg: the extract config.
        slots_dir: the run's NVDEC slot folder name (one per pass); None when the pool has no
            NVDEC actors (then every actor decodes as ``sampling.decoder`` says).
    """

    def __init__(self, cfg: ExtractConfig, slots_dir: str | None = None) -> None:
        started = time.perf_counter()
        if cfg.pipeline.cuda_blocking_sync and cfg.extractor.num_gpus > 0:
            log.info("CUDA waits sleep: %s", sleep_on_cuda_waits())
        self._slot = None
        if slots_dir is not None:
            self._slot = _take_slot(slots_dir, cfg.pipeline.nvdec_actors_per_node)
            # "auto" lets a slot holder fall back to the CPU where NVDEC is missing
            nvdec = "auto" if cfg.sampling.decoder == "auto" else "nvdec"
            decoder = nvdec if self._slot is not None else "cpu"
            cfg = dataclasses.replace(
                cfg, sampling=dataclasses.replace(cfg.sampling, decoder=decoder)
            )
        self.stage = stages.SnippetFeatures(cfg)
        self.decoder = self.stage.kind
        if cfg.pipeline.warm_up and self.stage.extractor.device.type == "cuda":
            s = cfg.sampling
            self.stage.extractor.extract(
                np.zeros((1, s.clip_len, s.crop_size, s.crop_size, 3), np.uint8)
            )
        self.start_seconds = time.perf_counter() - started
        self.ready_at = time.time()
        self._first = True
        self._lock = threading.Lock()
        self._niceness = None  # the niceness of a CPU decoder's calls once it is ready
        if self.decoder == "cpu" and cfg.pipeline.cpu_decoder_niceness:
            self._niceness = os.getpriority(os.PRIO_PROCESS, 0) + cfg.pipeline.cpu_decoder_niceness
            _lower_thread(self._niceness)
        log.info("feature actor ready in %.1f s, decoding on %s", self.start_seconds, self.decoder)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        if self._niceness is not None:  # a call may run in a thread of its own
            _lower_thread(self._niceness)
        recognizer = stages.recognizer_clock.seconds
        out = self.stage(batch)
        B = len(out[col.OK])
        share = 1.0 / max(B, 1)
        out[col.SECONDS_FEATURES] = np.full(B, (time.perf_counter() - started) * share)
        out[col.SECONDS_RECOGNIZER] = np.full(
            B, (stages.recognizer_clock.seconds - recognizer) * share
        )
        out[col.DECODER] = np.full(B, self.decoder, dtype=object)
        start_B, ready_B = np.zeros(B), np.zeros(B)
        with self._lock:
            if self._first and B:
                start_B[0], ready_B[0], self._first = self.start_seconds, self.ready_at, False
        out[col.ACTOR_START_SECONDS] = start_B
        out[col.ACTOR_READY_AT] = ready_B
        out[col.FEATURES_DONE_AT] = np.full(B, time.time())
        return out


CU_CTX_SCHED_BLOCKING_SYNC = 0x04
"""CUDA driver flag: a thread that waits for the GPU sleeps on an OS primitive instead of
spinning on a core (the default with fewer CUDA contexts than cores)."""


def sleep_on_cuda_waits(gpu_ordinal: int = 0) -> bool:
    """Makes this process's waits for its GPU (a stream or event synchronisation, a copy back
    to the host) sleep instead of spin, by setting the flags of the device's primary context,
    which torch and PyNvVideoCodec both use. It must run before the process's first CUDA call.

    Why: with several calls at once per actor, a call waiting for the recognizer or for NVDEC
    would otherwise keep a core busy that a decoding call could use.

    Returns:
        Whether the flags were set (False without the CUDA driver, or when the context was
        already active with other flags).
    """
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    device = ctypes.c_int()
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(device), gpu_ordinal) != 0:
        return False
    return cuda.cuDevicePrimaryCtxSetFlags(device, CU_CTX_SCHED_BLOCKING_SYNC) == 0


def _lower_thread(niceness: int) -> None:
    """Sets the calling thread's niceness to ``niceness`` unless it is that high already (on
    Linux niceness belongs to a thread, and a threaded actor's calls run in threads that
    existed before its constructor lowered its own)."""
    tid = threading.get_native_id()
    if os.getpriority(os.PRIO_PROCESS, tid) < niceness:
        os.setpriority(os.PRIO_PROCESS, tid, niceness)


def _take_slot(slots_dir: str, slots: int):
    """One of this node's ``slots`` NVDEC slots (an open, locked file), or None if all are
    held. The lock goes with the process, so a dead actor's slot is free again."""
    folder = os.path.join(tempfile.gettempdir(), "action-finder-nvdec", slots_dir)
    os.makedirs(folder, exist_ok=True)
    for i in range(slots):
        f = open(os.path.join(folder, f"slot-{i}"), "a")  # noqa: SIM115  (held while alive)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        return f
    return None
