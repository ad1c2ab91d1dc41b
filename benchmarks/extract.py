"""The extract job (``jobs.extract`` through Ray Data) on a 720p corpus, against the node's CPU
and NVDEC decode bounds measured in the same run.

    python -m benchmarks.extract --output benchmarks/results/extract_h200.json \
        [--distinct 32 --copies 24 --cpu-only-copies 12 --min-duration 10 --max-duration 20] \
        [--workdir /tmp/extract-bench] [--job LABEL "k=v k=v" ...] [--extra-job LABEL "k=v ..."] \
        [--slowonly [--compile] [--slowonly-copies 6]] [--skip-tsn --update] \
        [--previous OLD_RESULTS.json] [--cpu-rehearsal]

In one run:

* **corpus**: ``--distinct`` synthetic 720p H.264 videos (:func:`core.corpus.make_corpus`),
  each listed ``--copies`` times under its own video id in a manifest, so that the job runs
  long enough for a steady state without encoding hours of video first (every copy is decoded
  in full, like any other video); the CPU-only job, slower, gets ``--cpu-only-copies`` (the same
  videos in the same order, fewer times). With ``--workdir`` the corpus stays there and a later
  call with the same corpus arguments reuses it;
* **decode bounds**: ``--workers`` processes (default: one per core but one) that only decode
  and sample snippets on the CPU, as the job's CPU actors do; and, where NVDEC is usable, as
  many processes as the job has NVDEC streams (NVDEC actors x ``pipeline.calls_per_actor``)
  decoding with NVDEC (:class:`core.video.SnippetDecoder`); each over the whole run and over
  its steady window (``steady``, the jobs' 10%-90% rule), the rate the jobs are compared with;
* **recognizer bound**: the recognizer alone on the GPU on random snippets at full batch;
* **jobs**: ``jobs.extract.main`` as the CLI runs it (embedded Ray started by the job, the
  manifest as ``--input``), by default twice: ``hybrid`` (the production config as it is: CPU
  and NVDEC actors in one pool) and ``cpu_only`` (:data:`CPU_ONLY`: 8 CPU actors, the config's
  other settings, sleeping GPU waits included). For each: start-up (to the first committed
  batch) apart from the steady rate (between 10% and 90% of the videos' features done, from the
  job's progress stream), per-stage busy seconds (from the run record), GPU and NVDEC
  utilisation (``nvidia-smi``), object store use and free resources (sampled from Ray every
  second), the cores each kind of process used (:class:`ProcessCpu`, from /proc every half
  second: the feature actors by decoder, with their core-seconds per video in the steady
  window, the other stages, Ray's own processes, the driver, the machine's busy cores), and
  the layout the run resolved;
* **SlowOnly** (``--slowonly``): the recognizer alone at float32, bfloat16, channels-last and
  (``--compile``) ``torch.compile`` on the same real clips, each one's features against
  float32's; its CPU and NVDEC decode bounds; with ``--slowonly-copies`` the job with the
  SlowOnly config (hybrid; ``--slowonly-cpu-only`` also CPU decoding only);
* **previous run** (``--previous``): the headline figures of an earlier results file, kept
  beside the new ones for the before and after.

A run too long for one call splits: ``--skip-tsn --update`` runs only the SlowOnly part and adds
it to the results file; ``calls`` in the file says what ran in which call.
``--cpu-rehearsal`` runs every part tiny on a machine without a GPU, to try a command before
spending GPU time (its figures mean nothing).

Recognizers and localizer have random weights (their speed does not depend on them). Results
go to a JSON file; ``benchmarks/README.md`` has the table.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import math
import multiprocessing as mp
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

import core  # noqa: F401
from core import config
from core.pipeline.config import ExtractConfig

REPO = pathlib.Path(__file__).resolve().parents[1]
TSN = REPO / "configs" / "extract" / "tsn_r50_400x100.py"
SLOWONLY = REPO / "configs" / "extract" / "slowonly_r50_2048x100.py"
RANDOM_WEIGHTS = ["extractor.checkpoint=None"]
"""The recognizer's weights are random here (its speed does not depend on them)."""
STEADY = (0.1, 0.9)
"""The steady window: from this share of the videos committed to that one."""


def make_corpus(folder: str, args) -> tuple[list[str], bool]:
    """The distinct videos (made unless ``folder`` holds them from an earlier call with the same
    corpus arguments) and whether they were made now."""
    from core.corpus import make_corpus as make

    stamp = pathlib.Path(folder, "corpus-args.json")
    wanted = {"distinct": args.distinct, "min_duration": args.min_duration,
              "max_duration": args.max_duration}  # fmt: skip
    made = not (stamp.exists() and json.loads(stamp.read_text()) == wanted)
    if made:
        make(
            folder, args.distinct, 10, seed=0, min_duration=args.min_duration,
            max_duration=args.max_duration, resolutions=((1280, 720),), fps_choices=(30.0,),
            workers=os.cpu_count(),
        )  # fmt: skip
        stamp.write_text(json.dumps(wanted))
    paths = sorted(str(p) for p in pathlib.Path(folder, "videos").glob("*.mp4"))
    return paths, made


def write_manifest(folder: str, paths: list[str], copies: int, name: str) -> str:
    rows = ["video_id,uri"]
    for k in range(copies):  # copy k of every video, then copy k + 1: lengths stay mixed
        rows += [f"{pathlib.Path(p).stem}-c{k:03d},{p}" for p in paths]
    manifest = os.path.join(folder, f"{name}.csv")
    pathlib.Path(manifest).write_text("\n".join(rows) + "\n")
    return manifest


# --- decode bounds -------------------------------------------------------------------------

_DECODER = None


def _start_decoder(sampling: dict, device: str) -> None:
    global _DECODER
    from core.pipeline.stages import limit_cpu_threads
    from core.video import SamplingConfig, SnippetDecoder

    limit_cpu_threads(1)  # as each extract actor does
    _DECODER = SnippetDecoder(SamplingConfig(**sampling), device=device)


def _ready(_: int) -> bool:
    time.sleep(0.5)  # so that every worker starts one
    return True


def _decode_only(path: str) -> tuple[int, int, float]:
    import torch

    snippets, frames, duration = 0, 0, 0.0
    for batch in _DECODER.iter_snippets(path):
        snippets += len(batch.clips_NTHWC)
        frames, duration = batch.num_frames, batch.duration
    if torch.cuda.is_available() and _DECODER.kind == "nvdec":
        torch.cuda.synchronize()
    return snippets, frames, duration


def decode_bound(paths: list[str], sampling: dict, workers: int, decoder: str) -> dict:
    """Videos/s of ``workers`` processes that only decode with ``decoder`` (no model): over the
    whole run, and over the steady window (10% to 90% of the videos done, the jobs' rule),
    which leaves out the ramp and the tail where fewer than ``workers`` videos are left."""
    sampling = sampling | {"decoder": decoder}
    device = "cuda" if decoder == "nvdec" else "cpu"
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                initializer=_start_decoder, initargs=(sampling, device)) as pool:  # fmt: skip
        list(pool.map(_ready, range(workers)))  # started and imported off the clock
        for p in set(paths):  # the jobs read the files from the page cache too
            pathlib.Path(p).read_bytes()
        t0 = time.perf_counter()
        done_s, results = [], []
        for future in cf.as_completed([pool.submit(_decode_only, p) for p in paths]):
            results.append(future.result())
            done_s.append(time.perf_counter() - t0)
        seconds = time.perf_counter() - t0
    frames = sum(r[1] for r in results)
    video_s = sum(r[2] for r in results)
    return {
        "decoder": decoder, "workers": workers, "videos": len(paths), "seconds": seconds,
        "videos_per_s": len(paths) / seconds, "frames_decoded_per_s": frames / seconds,
        "snippets_per_s": sum(r[0] for r in results) / seconds,
        "video_hours_per_hour": video_s / seconds, "video_seconds": video_s,
        "steady": steady_rate(np.asarray(done_s)),
    }  # fmt: skip


def bound_rate(bound: dict) -> float:
    """A decode bound's videos/s: its steady window's, or the whole run's in a file from before
    the bound had one (or one too short for a window)."""
    return (bound.get("steady") or {}).get("videos_per_s") or bound["videos_per_s"]


def steady_rate(done_s: np.ndarray) -> dict | None:
    """Videos/s over the steady window of ``done_s`` (seconds at which each video finished)."""
    window = steady_window(done_s)
    if window is None:
        return None
    a, b = window
    inside = int(np.count_nonzero((done_s >= a) & (done_s <= b)))
    return {"from_s": a, "to_s": b, "videos_per_s": inside / (b - a)}


def steady_window(done_s) -> tuple[float, float] | None:
    """From the time 10% of the videos were done to the time 90% were (:data:`STEADY`), or
    None for fewer than 10 videos or no time between the two."""
    if len(done_s) < 10:
        return None
    done = np.sort(np.asarray(done_s))
    a, b = float(done[int(STEADY[0] * len(done))]), float(done[int(STEADY[1] * len(done)) - 1])
    return (a, b) if b > a else None


def nvdec_reason() -> str | None:
    from core.video import nvdec

    return nvdec.machine_unsupported_reason()


# --- the recognizer alone ------------------------------------------------------------------


def recognizer_bound(cfg: ExtractConfig) -> dict:
    import torch

    from core.features.extractor import FeatureExtractor

    s = cfg.sampling
    fx = FeatureExtractor(cfg.extractor, device="cuda")
    n = cfg.extractor.batch_size
    clips = np.random.randint(0, 255, (n, s.clip_len, s.crop_size, s.crop_size, 3), np.uint8)
    rate = _rate(fx, clips)
    del fx
    torch.cuda.empty_cache()
    return {"snippets_per_s": rate, "batch": n, "dtype": cfg.extractor.dtype}


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _rate(fx, clips, reps: int = 20, warm: int = 3) -> float:
    for _ in range(warm):
        fx.extract(clips)
    _sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fx.extract(clips)
    _sync()
    return len(clips) * reps / (time.perf_counter() - t0)


def real_clips(cfg: ExtractConfig, paths: list[str], n: int) -> np.ndarray:
    """``n`` snippets of the corpus, decoded on the CPU as the config samples them."""
    from core.video import iter_snippets

    clips = []
    for path in paths:
        for batch in iter_snippets(path, dataclasses.replace(cfg.sampling, decoder="cpu")):
            clips.append(batch.clips_NTHWC)
        if sum(len(c) for c in clips) >= n:
            break
    return np.concatenate(clips)[:n]


PRECISIONS = {
    "float32": dict(dtype="float32", channels_last=False),
    "float32_channels_last": dict(dtype="float32", channels_last=True),
    "bfloat16": dict(dtype="bfloat16", channels_last=False),
    "bfloat16_channels_last": dict(dtype="bfloat16", channels_last=True),
}
"""The recognizer's settings each precision variant runs with."""


def precision_variants(
    cfg: ExtractConfig, paths: list[str], compile_too: bool, device: str = "cuda",
    batch: int | None = None, reps: int = 10,
) -> dict:  # fmt: skip
    """The recognizer at float32 / bfloat16 / channels-last (and, with ``compile_too``,
    bfloat16 channels-last under ``torch.compile``) on the same real clips: snippets/s and each
    one's features against float32's. The compiled backbone is compiled with dynamic shapes
    (a job's batches vary in size): its first call's seconds are the compile an actor would
    pay at start, and a first call at a second batch size shows whether it compiles again."""
    import torch

    from core.features.extractor import FeatureExtractor

    n = batch or cfg.extractor.batch_size
    clips_NTHWC = real_clips(cfg, paths, n)
    variants = dict(PRECISIONS)
    if compile_too:
        variants["bfloat16_channels_last_compile"] = PRECISIONS["bfloat16_channels_last"]
    out, reference = {}, None
    for name, settings in variants.items():
        torch.backends.cudnn.benchmark = False
        fx = FeatureExtractor(dataclasses.replace(cfg.extractor, **settings), device=device)
        compiled = name.endswith("compile")
        if compiled:
            fx.model.backbone = torch.compile(fx.model.backbone, dynamic=True)
        t0 = time.perf_counter()
        feats = fx.extract(clips_NTHWC)
        _sync()
        first_s = time.perf_counter() - t0
        row = {"first_batch_s": first_s}
        if compiled and len(clips_NTHWC) > 1:  # a batch of another size: compiled again?
            t0 = time.perf_counter()
            fx.extract(clips_NTHWC[: len(clips_NTHWC) // 2 + 1])
            _sync()
            row["first_call_other_batch_size_s"] = time.perf_counter() - t0
        row["snippets_per_s"] = _rate(fx, clips_NTHWC, reps=reps, warm=min(3, reps))
        if reference is None:
            reference = feats
        row |= _against(feats, reference)
        out[name] = row
        del fx
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    out["batch"] = len(clips_NTHWC)
    out["clip_shape"] = list(clips_NTHWC.shape[1:])
    return out


def _against(feats: np.ndarray, reference: np.ndarray) -> dict:
    """How far ``feats`` are from ``reference`` (same snippets, one row each)."""
    diff = np.abs(feats - reference)
    cos = (feats * reference).sum(1) / (
        np.linalg.norm(feats, axis=1) * np.linalg.norm(reference, axis=1) + 1e-12
    )
    rel_row = np.linalg.norm(feats - reference, axis=1) / (
        np.linalg.norm(reference, axis=1) + 1e-12
    )
    return {
        "max_abs_diff_vs_float32": float(diff.max()),
        "max_relative_diff_vs_float32": float(diff.max() / (np.abs(reference).max() + 1e-12)),
        "relative_l2_vs_float32": float(np.linalg.norm(feats - reference)
                                        / (np.linalg.norm(reference) + 1e-12)),
        "max_row_relative_l2_vs_float32": float(rel_row.max()),
        "min_cosine_vs_float32": float(cos.min()),
    }  # fmt: skip


# --- monitors ------------------------------------------------------------------------------


class ProcessCpu:
    """The machine's CPU time by role, read from Linux's /proc: each Ray worker process by the
    class or function its title names (``ray::MapWorker(MapBatches(FeatureActor))`` →
    ``FeatureActor``), a feature actor split by its decoder (``FeatureActor[nvdec]`` once
    NVDEC's library ``libnvcuvid`` is mapped into it, ``FeatureActor[cpu]`` otherwise), Ray's
    own processes (``ray_system``: GCS, raylet, agents, dashboard), this process (``driver``)
    and the children it waited for (``driver_children``: the ``nvidia-smi`` calls). Each
    :meth:`sample` gives every role's CPU seconds since the first, which only grow (a process
    that ended keeps what it used until its last sample), and the busy cores of the machine."""

    RAY_SYSTEM = ("gcs_server", "raylet", "dashboard", "runtime_env_agent", "log_monitor",
                  "monitor.py", "agent_manager")  # fmt: skip
    RAY_AGENTS = ("DashboardAgent", "RuntimeEnvAgent")  # titled ray:: like workers
    MAPS_EVERY_S = 5.0  # a feature actor's maps read at most this often ...
    MAPS_UNTIL_S = 90.0  # ... while it is younger than this (it decodes from its first call)

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK")
        self.used: dict[int, tuple[str, float]] = {}  # pid -> (role, CPU seconds so far)
        self.before: dict[int, float] | None = None  # what the first sample's processes had used
        self.nvdec: set[int] = set()
        self.maps_read: dict[int, tuple[float, float]] = {}  # pid -> first, last read
        self.driver_children0: float | None = None
        self.machine0: float | None = None

    def sample(self) -> tuple[dict[str, float], float]:
        """CPU seconds by role since the first sample, and busy core-seconds of the machine."""
        me, first = os.getpid(), self.before is None
        if first:
            self.before = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
                title = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:  # ended meanwhile
                continue
            fields = stat.rsplit(")", 1)[1].split()
            seconds = (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime
            if first:
                self.before[pid] = seconds
            seconds -= self.before.get(pid, 0.0)
            if pid == me:
                children = (int(fields[13]) + int(fields[14])) / self.tick  # cutime + cstime
                if self.driver_children0 is None:
                    self.driver_children0 = children
                self.used[-1] = ("driver_children", children - self.driver_children0)
            role = self._role(pid, me, title.decode(errors="replace"))
            if role is None:
                continue
            known = self.used.get(pid)
            if role == "idle" and known is not None:  # an actor between calls
                role = known[0]
            self.used[pid] = (role, seconds)
        by_role: dict[str, float] = {}
        for role, seconds in self.used.values():
            by_role[role] = by_role.get(role, 0.0) + seconds
        return by_role, self._machine()

    def _role(self, pid: int, me: int, cmdline: str) -> str | None:
        if pid == me:
            return "driver"
        if cmdline.startswith("ray::"):
            name = cmdline[5:].split("\0", 1)[0].strip()
            if name.startswith("IDLE"):
                return "idle"
            name = name.split(" ", 1)[0]
            inner = name[name.rfind("(") + 1 :].split(")", 1)[0] if "(" in name else name
            inner = inner.split(".", 1)[0] or name
            if inner == "FeatureActor":
                return f"FeatureActor[{'nvdec' if self._has_nvdec(pid) else 'cpu'}]"
            return "ray_system" if inner in self.RAY_AGENTS else inner
        if any(part in cmdline for part in self.RAY_SYSTEM) and "ray" in cmdline:
            return "ray_system"
        return None

    def _has_nvdec(self, pid: int) -> bool:
        """Whether NVDEC's library is mapped into ``pid``, from its /proc maps: read at most
        every :data:`MAPS_EVERY_S` and not after :data:`MAPS_UNTIL_S` of the actor's life
        (a reader holds the process's memory-map lock, which its decoding threads' frame
        allocations wait on: read each sample, it slowed the CPU actors it measured)."""
        if pid in self.nvdec:
            return True
        now = time.monotonic()
        first, last = self.maps_read.get(pid, (now, -math.inf))
        if now - last < self.MAPS_EVERY_S or now - first > self.MAPS_UNTIL_S:
            return False
        self.maps_read[pid] = (first, now)
        try:
            if "libnvcuvid" in pathlib.Path(f"/proc/{pid}/maps").read_text():
                self.nvdec.add(pid)
        except OSError:
            pass
        return pid in self.nvdec

    def _machine(self) -> float:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        busy = (sum(values[:8]) - values[3] - values[4]) / self.tick  # all but idle, iowait
        if self.machine0 is None:
            self.machine0 = busy
        return busy - self.machine0


class Sampler:
    """Samples ``nvidia-smi`` (GPU and NVDEC utilisation, memory) every 0.25 s, Ray (object
    store, free CPUs and GPU share) every second and the CPU time of the machine's processes by
    role (:class:`ProcessCpu`) every half second, each with its time."""

    GPU_FIELDS = ("utilization.gpu", "utilization.decoder", "memory.used")

    def __init__(self) -> None:
        self.gpu: list[tuple[float, float, float, float]] = []
        self.ray: list[tuple[float, float, float, float, float]] = []
        self.cpu: list[tuple[float, dict[str, float], float]] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=f, daemon=True) for f in (self._gpu, self._ray, self._cpu)
        ]
        self.t0 = time.perf_counter()

    def _gpu(self) -> None:
        query = ["nvidia-smi", f"--query-gpu={','.join(self.GPU_FIELDS)}",
                 "--format=csv,noheader,nounits"]  # fmt: skip
        while not self._stop.is_set():
            try:
                out = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout
                values = [float(v) for v in out.splitlines()[0].split(",")]
                self.gpu.append((time.perf_counter() - self.t0, *values))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return
            self._stop.wait(0.25)

    def _ray(self) -> None:
        import ray
        from ray._private.internal_api import memory_summary

        while not self._stop.is_set():
            try:
                if ray.is_initialized():
                    free = ray.available_resources()
                    text = memory_summary(stats_only=True)
                    m = re.search(r"Plasma memory usage (\d+) MiB, (\d+) objects", text)
                    if m:
                        self.ray.append((time.perf_counter() - self.t0, float(m[1]), float(m[2]),
                                         free.get("CPU", 0.0), free.get("GPU", 0.0)))  # fmt: skip
            except Exception:  # noqa: BLE001  (Ray starting or stopping)
                pass
            self._stop.wait(1.0)

    def _cpu(self) -> None:
        if not os.path.exists("/proc/stat"):
            return
        processes = ProcessCpu()
        while not self._stop.is_set():
            by_role, machine = processes.sample()
            self.cpu.append((time.perf_counter() - self.t0, by_role, machine))
            self._stop.wait(0.5)

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def summary(self, window: tuple[float, float] | None) -> dict:
        out: dict = {}
        if self.gpu:
            g = np.asarray(self.gpu)
            out["gpu"] = _stats(g, window, {"util_pct": 1, "nvdec_util_pct": 2, "memory_mib": 3})
        if self.ray:
            r = np.asarray(self.ray)
            out["ray"] = _stats(r, window, {"object_store_mib": 1, "objects": 2,
                                            "free_cpus": 3, "free_gpu": 4})  # fmt: skip
        if len(self.cpu) >= 2:
            out["cpu"] = cpu_summary(self.cpu, window)
        return out


def cpu_summary(samples: list[tuple[float, dict[str, float], float]], window) -> dict:
    """Cores used by each role (:class:`ProcessCpu`) over the whole job and, where the
    samples cover it, over the steady ``window``; and the machine's busy cores likewise."""

    def cores(a: tuple, b: tuple) -> dict:
        dt_s = b[0] - a[0]
        roles = {k: round((v - a[1].get(k, 0.0)) / dt_s, 3) for k, v in sorted(b[1].items())}
        return {"seconds": round(dt_s, 2), "machine_busy_cores": round((b[2] - a[2]) / dt_s, 3),
                "cores_by_role": {k: v for k, v in roles.items() if v > 0}}  # fmt: skip

    out = {
        "cpu_cores": os.cpu_count(),
        "whole_job": cores(samples[0], samples[-1]),
        "cpu_seconds_by_role": {k: round(v, 2) for k, v in sorted(samples[-1][1].items())},
    }
    if window is not None:
        inside = [s for s in samples if window[0] <= s[0] <= window[1]]
        if len(inside) >= 2:
            out["steady"] = cores(inside[0], inside[-1])
    return out


def _stats(a: np.ndarray, window, columns: dict[str, int]) -> dict:
    out = {"samples": len(a)}
    in_window = a
    if window is not None:
        in_window = a[(a[:, 0] >= window[0]) & (a[:, 0] <= window[1])]
    for name, i in columns.items():
        out[name] = {"mean": float(a[:, i].mean()), "max": float(a[:, i].max())}
        if len(in_window):
            out[name]["steady_mean"] = float(in_window[:, i].mean())
    return out


class Progress(logging.Handler):
    """The driver's progress stream, in seconds since the job started: (when, videos committed)
    per committed batch, when each video's features were done and by which decoder, when each
    actor became ready."""

    def __init__(self, t0: float) -> None:
        super().__init__(logging.DEBUG)
        self.t0, self.wall0 = t0, time.time()
        self.points: list[tuple[float, int]] = [(0.0, 0)]
        self.features: list[tuple[float, str]] = []
        self.ready: dict[str, list[float]] = {"features": [], "localizer": []}

    def emit(self, record: logging.LogRecord) -> None:
        from core.pipeline import columns as col

        if not hasattr(record, "committed"):
            return
        self.points.append((time.perf_counter() - self.t0, int(record.committed)))
        summary = record.summary
        done = summary[col.FEATURES_DONE_AT] - self.wall0
        self.features += list(zip(done.tolist(), summary[col.DECODER].tolist(), strict=True))
        for name, column in (
            ("features", col.ACTOR_READY_AT),
            ("localizer", col.LOCALIZER_READY_AT),
        ):
            at = summary[column]
            self.ready[name] += (at[at > 0] - self.wall0).tolist()


class _NoDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


# --- the job -------------------------------------------------------------------------------


def run_job(label: str, config_path: str, manifest: str, options: list[str], tmp: str) -> dict:
    """``jobs.extract`` as its CLI runs it, with the monitors around it."""
    import ray

    import jobs.extract
    from core.io import runs

    out = os.path.join(tmp, f"out-{label}")
    shutil.rmtree(out, ignore_errors=True)  # a work folder kept from an earlier call
    argv = ["--config", config_path, "--input", manifest, "--output", out]
    argv += ["--cfg-options", *RANDOM_WEIGHTS, *options]
    driver_log = logging.getLogger("core.pipeline.driver")
    driver_log.setLevel(logging.DEBUG)
    t0 = time.perf_counter()
    progress = Progress(t0)
    driver_log.addHandler(progress)
    with Sampler() as sampler:
        sampler.t0 = t0
        code = jobs.extract.main(argv)
        seconds = time.perf_counter() - t0
    driver_log.removeHandler(progress)
    ray.shutdown()
    (run_dir,) = pathlib.Path(out, runs.RUNS_DIR).iterdir()
    record = json.loads(pathlib.Path(run_dir, "record.json").read_text())
    t, n = (np.asarray(v, dtype=float) for v in zip(*progress.points, strict=True))
    total = record["num_inputs"]
    result = {
        "label": label, "config": os.path.relpath(config_path, REPO), "cfg_options": options,
        "exit_code": code, "videos": total, "videos_ok": record["num_ok"],
        "seconds": seconds, "videos_per_s_overall": total / seconds,
        "start_up": start_up(t, n, progress),
        "run_seconds_to_first_commit": record.get("seconds_to_first_commit"),
        "actor_start_seconds": record.get("actor_start_seconds"),
        "busy_seconds": record.get("busy_seconds"),
        "videos_by_decoder": record.get("videos_by_decoder"),
        "progress": [[round(a, 2), int(b)] for a, b in zip(t, n, strict=True)],
    }  # fmt: skip
    result["layout"] = run_layout(str(pathlib.Path(run_dir, "config.py")))
    result["start_up_s"] = result["start_up"].get("first_commit_s")
    result["steady"], window = steady_state(progress.features, t, n)
    result["monitors"] = sampler.summary(window)
    steady_cpu = result["monitors"].get("cpu", {}).get("steady")
    if steady_cpu and result["steady"]:
        steady_cpu["feature_actor_core_seconds_per_video"] = per_video_cpu(
            steady_cpu["cores_by_role"], result["steady"]["videos_per_s_by_decoder"]
        )
    return result


def per_video_cpu(cores_by_role: dict[str, float], rates: dict[str, float]) -> dict[str, float]:
    """Core-seconds the feature actors of each decoder spent per video they finished, in the
    steady window: their cores over their rate."""
    out = {}
    for decoder, rate in rates.items():
        cores = cores_by_role.get(f"FeatureActor[{decoder}]")
        if cores is not None and rate > 0:
            out[decoder] = round(cores / rate, 4)
    return out


def run_layout(config_path: str) -> dict:
    """The settings the run resolved that shape its speed (from the config saved with it)."""
    cfg, _ = config.load(config_path, ExtractConfig)
    p, x = cfg.pipeline, cfg.extractor
    return {
        "cpu_actors": x.num_actors, "nvdec_actors": p.nvdec_actors_per_node,
        "calls_per_actor": p.calls_per_actor, "cuda_blocking_sync": p.cuda_blocking_sync,
        "decoder": cfg.sampling.decoder, "dtype": x.dtype, "channels_last": x.channels_last,
        "batch_size": x.batch_size, "gpu_share_per_actor": x.num_gpus,
    }  # fmt: skip


def start_up(t: np.ndarray, n: np.ndarray, progress: Progress) -> dict:
    """Seconds from the job's start to each step of its start-up."""
    out: dict = {}
    for name, times in progress.ready.items():
        if times:
            out[f"{name}_actors_ready_s"] = {"first": min(times), "median": float(np.median(times)),
                                             "last": max(times), "actors": len(times)}  # fmt: skip
    if progress.features:
        out["first_features_s"] = min(f for f, _ in progress.features)
    if n.max() > 0:
        out["first_commit_s"] = float(t[np.argmax(n > 0)])
    return out


def steady_state(features: list[tuple[float, str]], t: np.ndarray, n: np.ndarray):
    """The rate between 10% and 90% of the videos' features done (the feature actors' rate:
    the stages after them run far faster and catch up), by decoder, and the commits' rate
    over the same window."""
    window = steady_window([f for f, _ in features])
    if window is None:
        return None, None
    a, b = window
    inside = [d for f, d in features if a <= f <= b]
    by_decoder = {k: inside.count(k) / (b - a) for k in sorted(set(inside))}
    committed = np.interp([a, b], t, n)
    return {
        "from_s": float(a), "to_s": float(b), "videos_per_s": len(inside) / (b - a),
        "videos_per_s_by_decoder": by_decoder,
        "commits_per_s_same_window": float((committed[1] - committed[0]) / (b - a)),
        "tail_s": float(t[-1] - b),
    }, (float(a), float(b))  # fmt: skip


def load(path: pathlib.Path) -> ExtractConfig:
    cfg, _ = config.load(str(path), ExtractConfig)
    return dataclasses.replace(cfg, extractor=dataclasses.replace(cfg.extractor, checkpoint=None))


def _save(path: str, result: dict) -> None:
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(path).write_text(json.dumps(result, indent=2) + "\n")


def _show(name: str, value) -> None:
    print(json.dumps({name: value}), flush=True)


def _hours_per_hour(videos_per_s: float, bound: dict) -> float:
    return videos_per_s * bound["video_seconds"] / bound["videos"]


CPU_ONLY = ["extractor.num_actors=8", "pipeline.nvdec_actors_per_node=0", "sampling.decoder=cpu"]
"""The cpu_only job: the production config with its NVDEC actors replaced by one more CPU
actor (its GPU waits sleep too: the config's ``pipeline.cuda_blocking_sync``)."""
CPU_REHEARSAL = ["extractor.num_gpus=0", "localizer.num_gpus=0", "extractor.num_actors=1",
                 "pipeline.nvdec_actors_per_node=0", "sampling.decoder=cpu"]  # fmt: skip
"""``--cpu-rehearsal``: every job on a machine without a GPU, to try a command before a GPU
call (its figures mean nothing)."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--workdir", help="where the corpus and the jobs' outputs go and stay "
                        "(a later call reuses the corpus); default: a temporary folder")  # fmt: skip
    parser.add_argument("--distinct", type=int, default=32)
    parser.add_argument("--copies", type=int, default=24)
    parser.add_argument("--cpu-only-copies", type=int,
                        help="copies in the cpu_only job's manifest (default --copies): the same "
                        "videos in the same order, fewer of them, for a slower job")  # fmt: skip
    parser.add_argument("--bound-videos", type=int, default=128)
    parser.add_argument("--min-duration", type=float, default=10)
    parser.add_argument("--max-duration", type=float, default=20)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--job", nargs=2, action="append", metavar=("LABEL", "OPTIONS"),
                        help="a job to run: label and space-separated cfg options; default "
                        "hybrid (the config as it is) and cpu_only")  # fmt: skip
    parser.add_argument("--extra-job", nargs=2, action="append", default=[],
                        metavar=("LABEL", "OPTIONS"), help="a job to run after the others "
                        "(reported, not in the headline figures)")  # fmt: skip
    parser.add_argument("--skip-tsn", action="store_true",
                        help="no TSN bounds and jobs (with --update: SlowOnly in a later call)")  # fmt: skip
    parser.add_argument("--jobs-only", action="store_true", help="with --update: only the "
                        "--job/--extra-job jobs, added to the file's (its corpus, in --workdir, "
                        "and its bounds stay)")  # fmt: skip
    parser.add_argument("--update", action="store_true", help="add to the --output file's "
                        "results instead of starting afresh (the parts run now replace theirs)")  # fmt: skip
    parser.add_argument("--previous", help="an earlier results file: its headline figures "
                        "are kept as previous_run")  # fmt: skip
    parser.add_argument("--slowonly", action="store_true", help="SlowOnly's precisions and bounds")
    parser.add_argument("--slowonly-copies", type=int, default=0,
                        help="copies in the SlowOnly job's manifest; 0: no SlowOnly job")  # fmt: skip
    parser.add_argument("--slowonly-cpu-only", action="store_true",
                        help="also the SlowOnly job with CPU decoding only")  # fmt: skip
    parser.add_argument("--compile", action="store_true", help="also torch.compile SlowOnly")
    parser.add_argument("--cpu-rehearsal", action="store_true", help="run on a machine without "
                        "a GPU, everything tiny, to try the command (figures mean nothing)")  # fmt: skip
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    import torch

    from core.runtime import package_versions, setup_logging

    setup_logging()
    for handler in logging.getLogger().handlers:
        handler.addFilter(_NoDebug())
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    call = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.extract " + shlex.join(sys.argv[1:]),
        "parts": (["tsn"] if not args.skip_tsn else [])
        + (["slowonly"] if args.slowonly or args.slowonly_copies else [])
        + (["tsn jobs"] if args.jobs_only else []),
    }  # fmt: skip
    result: dict = {}
    if args.update and pathlib.Path(args.output).exists():
        result = json.loads(pathlib.Path(args.output).read_text())
    result |= {
        "device": "cpu (rehearsal)" if args.cpu_rehearsal else torch.cuda.get_device_name(0),
        "cpu_cores": os.cpu_count(),
        "packages": package_versions(("torch", "ray", "mmaction2", "av", "PyNvVideoCodec")),
        "ray_data": True,
    }  # fmt: skip
    result["calls"] = result.get("calls", []) + [call]
    if args.previous:
        result["previous_run"] = previous_run(args.previous)
    with _workdir(args.workdir) as work:
        t0 = time.perf_counter()
        paths, made = make_corpus(work, args)
        if args.jobs_only:
            if not (args.update and "decode_bound" in result):
                raise SystemExit("--jobs-only needs --update and a file with the TSN bounds")
            tsn(args, paths, work, result)
        elif not args.skip_tsn:
            result["date"], result["command"] = call["date"], call["command"]
            result["corpus"] = {
                "distinct_videos": len(paths), "copies": args.copies,
                "cpu_only_copies": args.cpu_only_copies or args.copies,
                "resolution": "1280x720", "fps": 30, "codec": "h264",
                "seconds_to_make": time.perf_counter() - t0 if made else None,
            }  # fmt: skip
            tsn(args, paths, work, result)
        if args.slowonly or args.slowonly_copies:
            result["slowonly"] = slowonly(args, paths, work)
            result["slowonly"]["date"] = call["date"]
    _save(args.output, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("jobs", "slowonly")}, indent=2))
    return 0


@contextlib.contextmanager
def _workdir(folder: str | None):
    if folder:
        os.makedirs(folder, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield tmp


def tsn(args, paths: list[str], work: str, result: dict) -> None:
    """The TSN part: decode and recognizer bounds, then the jobs, saved after each job."""
    cfg = load(TSN)
    rehearsal = CPU_REHEARSAL if args.cpu_rehearsal else []
    job_list = (args.job or [["hybrid", ""], ["cpu_only", " ".join(CPU_ONLY)]]) + args.extra_job
    reason = "--cpu-rehearsal" if args.cpu_rehearsal else nvdec_reason()
    if args.jobs_only:  # the bounds and the corpus of the file's earlier call
        _run_jobs(args, job_list, paths, work, result, reason, rehearsal)
        return
    sampling = dataclasses.asdict(cfg.sampling)
    bound_paths = (paths * args.bound_videos)[: args.bound_videos]
    bounds = {"cpu": decode_bound(bound_paths, sampling, args.workers, "cpu")}
    result["nvdec"] = reason is None
    if reason is None:
        # as many decoding processes as the job has NVDEC streams (actors x calls each)
        n = (cfg.pipeline.nvdec_actors_per_node or 4) * cfg.pipeline.calls_per_actor
        bounds["nvdec"] = decode_bound(bound_paths, sampling, n, "nvdec")
    else:
        result["nvdec_unavailable_because"] = reason
    result["decode_bound"] = bounds
    _show("decode_bound", bounds)
    per_video_s = bounds["cpu"]["video_seconds"] / bounds["cpu"]["videos"]
    corpus = result["corpus"]
    corpus["video_seconds_per_copy_of_the_corpus"] = per_video_s * len(paths)
    if not args.cpu_rehearsal:
        result["recognizer_bound"] = recognizer_bound(cfg)
        _show("recognizer_bound", result["recognizer_bound"])
    result["jobs"] = {}
    _run_jobs(args, job_list, paths, work, result, reason, rehearsal)


def _run_jobs(args, job_list, paths, work, result, reason, rehearsal) -> None:
    """Runs the TSN jobs, adding each to ``result["jobs"]`` and saving the file after each."""
    bounds, corpus = result["decode_bound"], result["corpus"]
    per_video_s = bounds["cpu"]["video_seconds"] / bounds["cpu"]["videos"]
    jobs_out = result.setdefault("jobs", {})
    for label, options in job_list:
        if label != "cpu_only" and reason is not None and not options and not rehearsal:
            continue  # the hybrid job needs NVDEC
        copies = corpus["cpu_only_copies"] if label == "cpu_only" else args.copies
        manifest = write_manifest(work, paths, copies, f"manifest-{copies}")
        j = run_job(label, str(TSN), manifest, options.split() + rehearsal, work)
        j["copies"], j["video_seconds"] = copies, per_video_s * len(paths) * copies
        rate = (j.get("steady") or {}).get("videos_per_s")
        if rate:
            j["steady"]["fraction_of_cpu_decode_bound"] = rate / bound_rate(bounds["cpu"])
            j["steady"]["video_hours_per_hour"] = _hours_per_hour(rate, bounds["cpu"])
        jobs_out[label] = j
        _show(label, {k: v for k, v in j.items() if k != "progress"})
        _headline(result)
        _save(args.output, result)  # what is done so far, should a later part fail


def _headline(result: dict) -> None:
    """The figures the README quotes, from the jobs' steady rates."""
    jobs_out = result["jobs"]

    def steady(label):
        return (jobs_out.get(label, {}).get("steady") or {}).get("videos_per_s")

    bound = result["decode_bound"]["cpu"]
    result["end_to_end_cpu_only_videos_per_s"] = steady("cpu_only")
    result["end_to_end_videos_per_s"] = steady("hybrid")
    if steady("hybrid"):
        result["video_hours_per_hour"] = _hours_per_hour(steady("hybrid"), bound)
    if steady("cpu_only"):
        result["cpu_only_video_hours_per_hour"] = _hours_per_hour(steady("cpu_only"), bound)
        result["cpu_only_fraction_of_cpu_decode_bound"] = steady("cpu_only") / bound_rate(bound)
    if steady("hybrid") and steady("cpu_only"):
        result["hybrid_over_cpu_only"] = steady("hybrid") / steady("cpu_only")
    result["start_up_s"] = {k: v.get("start_up_s") for k, v in jobs_out.items()}
    result["steady_window_s"] = {
        k: (v.get("steady") or {}).get("to_s", 0) - (v.get("steady") or {}).get("from_s", 0)
        for k, v in jobs_out.items()
    }
    result["gpu_util_pct_steady"] = {
        k: v.get("monitors", {}).get("gpu", {}).get("util_pct", {}).get("steady_mean")
        for k, v in jobs_out.items()
    }
    if result["decode_bound"].get("nvdec"):
        both = bound_rate(bound) + bound_rate(result["decode_bound"]["nvdec"])
        result["cpu_plus_nvdec_decode_bound_videos_per_s"] = both


HEADLINE = (
    "date", "commit", "command", "corpus", "decode_bound", "end_to_end_cpu_only_videos_per_s",
    "end_to_end_videos_per_s", "hybrid_over_cpu_only", "video_hours_per_hour", "start_up_s",
    "gpu_util_pct_steady", "cpu_plus_nvdec_decode_bound_videos_per_s",
)  # fmt: skip


def previous_run(path: str) -> dict:
    """An earlier results file's headline figures and each job's steady state and layout."""
    old = json.loads(pathlib.Path(path).read_text())
    out = {k: old[k] for k in HEADLINE if k in old}
    out["jobs"] = {
        label: {"cfg_options": j.get("cfg_options"), "steady": j.get("steady"),
                "busy_seconds": j.get("busy_seconds"), "videos": j.get("videos")}
        for label, j in old.get("jobs", {}).items()
    }  # fmt: skip
    return out


def slowonly(args, paths: list[str], work: str) -> dict:
    """The SlowOnly part: the recognizer's precisions, the decode bounds and the job."""
    cfg = load(SLOWONLY)
    rehearsal = CPU_REHEARSAL if args.cpu_rehearsal else []
    out: dict = {"config": os.path.relpath(SLOWONLY, REPO)}
    if args.cpu_rehearsal:
        out["precision"] = precision_variants(cfg, paths, args.compile, "cpu", batch=2, reps=1)
    else:
        out["precision"] = precision_variants(cfg, paths, args.compile)
    _show("slowonly_precision", out["precision"])
    sampling = dataclasses.asdict(cfg.sampling)
    bound_paths = (paths * args.bound_videos)[: args.bound_videos]
    bounds = out["decode_bound"] = {"cpu": decode_bound(bound_paths, sampling, args.workers, "cpu")}
    reason = "--cpu-rehearsal" if args.cpu_rehearsal else nvdec_reason()
    if reason is None:
        n = cfg.pipeline.nvdec_actors_per_node * cfg.pipeline.calls_per_actor
        bounds["nvdec"] = decode_bound(bound_paths, sampling, n, "nvdec")
    _show("slowonly_decode_bound", bounds)
    if not args.slowonly_copies:
        return out
    manifest = write_manifest(work, paths, args.slowonly_copies, "manifest-slowonly")
    jobs = [("hybrid", [])] + ([("cpu_only", CPU_ONLY)] if args.slowonly_cpu_only else [])
    per_video_s = bounds["cpu"]["video_seconds"] / bounds["cpu"]["videos"]
    for label, options in jobs:
        if label == "hybrid" and reason is not None and not rehearsal:
            continue
        j = run_job(f"slowonly-{label}", str(SLOWONLY), manifest, options + rehearsal, work)
        j["copies"] = args.slowonly_copies
        j["video_seconds"] = per_video_s * len(paths) * args.slowonly_copies
        steady = j.get("steady") or {}
        if steady.get("videos_per_s"):
            rate = steady["videos_per_s"]
            steady["fraction_of_cpu_decode_bound"] = rate / bound_rate(bounds["cpu"])
            if "nvdec" in bounds:
                both = bound_rate(bounds["cpu"]) + bound_rate(bounds["nvdec"])
                steady["fraction_of_cpu_plus_nvdec_decode_bound"] = rate / both
            snippets = bounds["cpu"]["snippets_per_s"] / bounds["cpu"]["videos_per_s"]
            steady["snippets_per_s"] = rate * snippets
            steady["video_hours_per_hour"] = _hours_per_hour(rate, bounds["cpu"])
        out[label] = j
        _show(j["label"], {k: v for k, v in j.items() if k != "progress"})
    return out


if __name__ == "__main__":
    raise SystemExit(main())
