"""Extract throughput on a 720p synthetic corpus, against its decode and model bounds.

    python -m benchmarks.extract --output benchmarks/results/extract_h100.json \
        [--num-videos 32 --min-duration 20 --max-duration 40 --workers 15] [--ray]

In one run:

* **decode bound**: every worker only decodes and samples snippets (TSN sampling of the
  production config: one frame every 16, resized to 256 and centre-cropped), no model;
* **model bound**: the recognizer alone on the accelerator on random snippets at full batch,
  and the localizer alone (forward + batched post-processing) on random features;
* **end to end**: with ``--ray``, the real Ray Data job (``core.pipeline.driver.run_extract``,
  what ``jobs.extract`` runs) with ``--workers`` decoding actors sharing the GPU; without it,
  a stand-in: the pipeline's stage classes (``SnippetFeatures`` then ``Proposals`` from
  core.pipeline.stages) in a process pool, which measures the stages but not Ray Data's
  scheduling, start-up and object store (the results file says which mode ran);
* GPU utilisation sampled by ``nvidia-smi`` during the end-to-end part;
* whether NVDEC is reachable from the software there (PyAV's ``h264_cuvid``).

The recognizer has random weights (its speed does not depend on them). Results go to a JSON
file; ``benchmarks/README.md`` has the table.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import copy
import dataclasses
import datetime as dt
import json
import multiprocessing as mp
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading
import time

import numpy as np

import core  # noqa: F401
from core import config
from core.pipeline import columns as col
from core.pipeline import driver, stages
from core.pipeline.config import ExtractConfig

REPO = pathlib.Path(__file__).resolve().parents[1]
PROD_CONFIG = REPO / "configs" / "extract" / "tsn_r50_400x100.py"


def make_720p_corpus(folder: str, args) -> list[str]:
    from core.corpus import make_corpus

    make_corpus(
        folder, args.num_videos, 10, seed=0, min_duration=args.min_duration,
        max_duration=args.max_duration, resolutions=((1280, 720),), fps_choices=(30.0,),
        workers=args.workers,
    )  # fmt: skip
    return sorted(str(p) for p in pathlib.Path(folder, "videos").glob("*.mp4"))


def _decode_only(path: str, sampling: dict) -> tuple[int, int, float]:
    from core.video import SamplingConfig, iter_snippets

    snippets, frames, duration = 0, 0, 0.0
    for batch in iter_snippets(path, SamplingConfig(**sampling)):
        snippets += len(batch.clips_NTHWC)
        frames, duration = batch.num_frames, batch.duration
    return snippets, frames, duration


def _import_decoder(_: int) -> bool:
    import core.video  # noqa: F401
    from core.pipeline.stages import limit_cpu_threads

    limit_cpu_threads(1)  # as each extract actor does

    time.sleep(0.5)  # so that every worker gets one
    return True


def decode_bound(paths: list[str], sampling: dict, workers: int) -> dict:
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(_import_decoder, range(workers)))  # started and imported off the clock
        for p in paths:  # the end-to-end run reads the files from the page cache too
            pathlib.Path(p).read_bytes()
        t0 = time.perf_counter()
        results = list(pool.map(_decode_only, paths, [sampling] * len(paths)))
        seconds = time.perf_counter() - t0
    snippets = sum(r[0] for r in results)
    frames = sum(r[1] for r in results)
    video_s = sum(r[2] for r in results)
    return {
        "workers": workers, "seconds": seconds, "videos_per_s": len(paths) / seconds,
        "frames_decoded_per_s": frames / seconds, "snippets_per_s": snippets / seconds,
        "video_hours_per_hour": video_s / seconds, "snippets": snippets, "video_seconds": video_s,
    }  # fmt: skip


def model_bound(cfg: ExtractConfig, device: str, snippets_per_video: float) -> dict:
    import torch

    from core.features.extractor import FeatureExtractor
    from core.models.localizer import load_localizer

    s = cfg.sampling
    fx = FeatureExtractor(cfg.extractor, device=device)
    n = cfg.extractor.batch_size
    clips = np.random.randint(0, 255, (n, s.clip_len, s.crop_size, s.crop_size, 3), np.uint8)
    for _ in range(3):
        fx.extract(clips)
    _sync(device)
    t0, reps = time.perf_counter(), 20
    for _ in range(reps):
        fx.extract(clips)
    _sync(device)
    snippet_rate = n * reps / (time.perf_counter() - t0)

    loc = load_localizer(cfg.model, device=device, dtype=cfg.localizer.dtype)
    B, C, T = 64, cfg.model["feat_dim"], cfg.temporal_dim
    feats = np.random.rand(B, C, T).astype(np.float32)
    durations = np.full(B, 30.0)
    for _ in range(2):
        loc.propose(feats, durations)
    _sync(device)
    t0, reps = time.perf_counter(), 10
    for _ in range(reps):
        loc.propose(feats, durations)
    _sync(device)
    loc_rate = B * reps / (time.perf_counter() - t0)
    del fx, loc
    torch.cuda.empty_cache() if device == "cuda" else None
    return {
        "recognizer_snippets_per_s": snippet_rate,
        "recognizer_videos_per_s_at_corpus_snippets": snippet_rate / snippets_per_video,
        "localizer_videos_per_s": loc_rate, "batch": n,
    }  # fmt: skip


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


_WORKER_STAGE = None


def _init_worker(cfg: ExtractConfig) -> None:
    global _WORKER_STAGE
    _WORKER_STAGE = stages.SnippetFeatures(cfg)


def _features_of(paths: list[str]) -> dict:
    batch = {
        "video_id": np.asarray([pathlib.Path(p).stem for p in paths], dtype=object),
        "uri": np.asarray(paths, dtype=object),
    }
    return _WORKER_STAGE(batch)


def end_to_end_pool(paths: list[str], cfg: ExtractConfig, workers: int) -> dict:
    """The pipeline's stage classes with a process pool standing in for Ray's actor pool."""
    loc = stages.LabelledProposals(cfg, None)
    chunks = [paths[i : i + cfg.extractor.videos_per_call]
              for i in range(0, len(paths), cfg.extractor.videos_per_call)]  # fmt: skip
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                initargs=(cfg,)) as pool:  # fmt: skip
        list(pool.map(_warm, range(workers)))  # models built before the clock starts
        t0 = time.perf_counter()
        ok = props = 0
        pending = []
        for out in pool.map(_features_of, chunks):
            pending.append(out)
            if sum(len(o["video_id"]) for o in pending) >= cfg.localizer.batch_size:
                ok, props = _localize(loc, pending, ok, props)
        ok, props = _localize(loc, pending, ok, props)
        seconds = time.perf_counter() - t0
    return {"mode": "process pool", "workers": workers, "seconds": seconds,
            "videos_per_s": len(paths) / seconds, "videos_ok": ok, "proposals": props}  # fmt: skip


def _warm(_: int) -> bool:
    """One forward pass per worker off the clock: CUDA context, cuDNN handles, kernels."""
    s = _WORKER_STAGE.cfg.sampling
    _WORKER_STAGE.extractor.extract(
        np.zeros((8, s.clip_len, s.crop_size, s.crop_size, 3), np.uint8)
    )
    time.sleep(0.5)
    return True


def _localize(loc, pending, ok, props):
    if not pending:
        return ok, props
    batch = {k: np.concatenate([p[k] for p in pending]) for k in pending[0]}
    out = loc(batch)
    pending.clear()
    return ok + int(out[col.OK].sum()), props + int(out[col.PROPOSAL_VALID].sum())


def end_to_end_ray(paths: list[str], cfg: ExtractConfig, raw_text: str, gpus: int) -> dict:
    import ray

    from core.pipeline.inputs import VideoInput

    ray.init(num_cpus=os.cpu_count(), num_gpus=gpus, include_dashboard=False)
    out = tempfile.mkdtemp(prefix="extract-bench-")
    inputs = [VideoInput(pathlib.Path(p).stem, p) for p in paths]
    summary = driver.run_extract(cfg, raw_text, inputs, out, "bench")
    ray.shutdown()
    shutil.rmtree(out, ignore_errors=True)
    return {"mode": "ray data", "seconds": summary.seconds,
            "videos_per_s": len(paths) / summary.seconds, "videos_ok": summary.num_ok,
            "proposals": summary.num_proposals}  # fmt: skip


class GpuSampler:
    """``nvidia-smi`` utilisation samples every 200 ms while in use."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, timeout=5,
                ).stdout  # fmt: skip
                self.samples.append(float(out.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return
            self._stop.wait(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        if not self.samples:
            return {"available": False}
        a = np.asarray(self.samples)
        return {"available": True, "mean_pct": float(a.mean()), "p50_pct": float(np.median(a)),
                "max_pct": float(a.max()), "samples": len(a)}  # fmt: skip


def nvdec_probe(path: str) -> dict:
    """Whether PyAV's NVDEC decoder (``h264_cuvid``) decodes here, and how fast (one video)."""
    import av

    names = sorted(c for c in av.codecs_available if "cuvid" in c)
    result: dict = {"pyav_version": av.__version__, "pyav_cuvid_decoders": names}
    if "h264_cuvid" not in names:
        return result | {"usable": False, "why": "PyAV's FFmpeg has no h264_cuvid"}
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            ctx = av.CodecContext.create("h264_cuvid", "r")
            ctx.extradata = stream.codec_context.extradata
            frames, t0 = 0, time.perf_counter()
            for packet in container.demux(stream):
                frames += len(ctx.decode(packet))
            frames += len(ctx.decode(None))
            seconds = time.perf_counter() - t0
        return result | {"usable": frames > 0, "frames": frames, "frames_per_s": frames / seconds}
    except Exception as e:  # noqa: BLE001  (any failure means: not usable here)
        return result | {"usable": False, "why": f"{type(e).__name__}: {e}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--num-videos", type=int, default=90)
    parser.add_argument("--min-duration", type=float, default=8)
    parser.add_argument("--max-duration", type=float, default=20)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--config", default=str(PROD_CONFIG))
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")
    parser.add_argument("--ray", action="store_true", help="end to end through Ray Data")
    parser.add_argument("--cfg-options", nargs="*", default=[])
    args = parser.parse_args()

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    options = dict(o.split("=", 1) for o in args.cfg_options)
    cfg, raw = config.load(args.config, ExtractConfig, _typed(options))
    cfg = dataclasses.replace(cfg, extractor=dataclasses.replace(
        cfg.extractor, checkpoint=None, num_actors=args.workers,
        num_gpus=(1.0 / (args.workers + 1)) if device == "cuda" else 0.0,
        dtype=cfg.extractor.dtype if device == "cuda" else "float32"),
        localizer=dataclasses.replace(cfg.localizer, num_gpus=(1.0 / (args.workers + 1))
                                      if device == "cuda" else 0.0))  # fmt: skip
    result: dict = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "cpu_cores": os.cpu_count(), "torch": torch.__version__, "config": args.config,
        "cfg_options": args.cfg_options, "sampling": dataclasses.asdict(cfg.sampling),
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = make_720p_corpus(tmp, args)
        result["corpus"] = {"videos": len(paths), "resolution": "1280x720", "fps": 30,
                            "seconds_to_make": time.perf_counter() - t0}  # fmt: skip
        sampling = dataclasses.asdict(cfg.sampling)
        result["decode_bound"] = decode_bound(paths, sampling, args.workers)
        result["corpus"]["video_seconds"] = result["decode_bound"]["video_seconds"]
        per_video = result["decode_bound"]["snippets"] / len(paths)
        result["model_bound"] = model_bound(cfg, device, per_video)
        with GpuSampler() as gpu:
            if args.ray:
                e2e = end_to_end_ray(paths, cfg, raw.pretty_text, 1 if device == "cuda" else 0)
            else:
                e2e = end_to_end_pool(paths, cfg, args.workers)
        e2e["video_hours_per_hour"] = result["corpus"]["video_seconds"] / e2e["seconds"]
        e2e["fraction_of_decode_bound"] = (
            e2e["videos_per_s"] / result["decode_bound"]["videos_per_s"]
        )
        result["end_to_end"] = e2e
        result["gpu_utilisation_during_end_to_end"] = gpu.summary()
        result["nvdec"] = nvdec_probe(paths[0])
    pathlib.Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def _typed(options: dict[str, str]) -> dict:
    out = {}
    for k, v in options.items():
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return copy.deepcopy(out)


if __name__ == "__main__":
    raise SystemExit(main())
