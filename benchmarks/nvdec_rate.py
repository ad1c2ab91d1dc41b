"""Decode rate of one video stream, CPU (PyAV, one thread as an extract actor) against NVDEC
(``sampling.decoder='nvdec'``), from file to the uint8 clips the recognizer takes, for the
production TSN and SlowOnly sampling. One process, one stream at a time: not the extract job.

Usage (on a GPU machine with PyAV and PyNvVideoCodec):
    python -m benchmarks.nvdec_rate --out results.json [--seconds 20]

With ``--cpu-cost``: the host CPU seconds a video costs when decoded as the extract job's NVDEC
actors decode (``--processes`` processes, ``--threads`` threads each with a decoder of its own),
with CUDA waits spinning (the default) and sleeping (:func:`core.pipeline.pools.sleep_on_cuda_waits`),
against one PyAV thread on the CPU; 720p H.264 from ``benchmarks.extract``'s corpus.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import platform
import tempfile
import time

import torch

from core.video import SamplingConfig, SnippetDecoder, iter_snippets
from tests.integration import videos

CONFIGS = {
    "tsn_1x16_crop256": SamplingConfig(clip_len=1, clip_interval=16, short_side=256, crop_size=256),
    "slowonly_8x8_crop224": SamplingConfig(
        clip_len=8, clip_interval=16, frame_interval=8, short_side=256, crop_size=224
    ),
}


def timed(batches) -> tuple[float, int, int]:
    """Seconds to the last clip on its device, frames in the video, snippets."""
    start = time.perf_counter()
    snippets = 0
    for batch in batches:
        snippets += len(batch.clips_NTHWC)
        last = batch
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, last.num_frames, snippets


_BARRIER = None


def _start(barrier) -> None:
    global _BARRIER
    _BARRIER = barrier


def _cost_worker(sleep: bool, threads: int, paths: list[str], decoder: str) -> dict:
    """In a fresh process: decode ``paths`` with ``threads`` threads, once the others are ready."""
    import concurrent.futures as cf
    import queue

    from core.pipeline.pools import sleep_on_cuda_waits

    flags_set = sleep_on_cuda_waits() if sleep else False
    cfg = dataclasses.replace(CONFIGS["tsn_1x16_crop256"], decoder=decoder)
    idle: queue.Queue = queue.Queue()
    for _ in range(threads):
        idle.put(SnippetDecoder(cfg, device="cuda" if decoder == "nvdec" else "cpu"))

    def one(path: str) -> int:
        d = idle.get()
        try:
            n = sum(len(b.clips_NTHWC) for b in d.iter_snippets(path))
            if decoder == "nvdec":
                torch.cuda.current_stream().synchronize()
            return n
        finally:
            idle.put(d)

    with cf.ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, paths[:threads]))  # warm-up, off the clock
        _BARRIER.wait()
        cpu0, t0 = time.process_time(), time.perf_counter()
        list(pool.map(one, paths))
        return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - cpu0,
                "videos": len(paths), "flags_set": flags_set}  # fmt: skip


def cpu_cost(args) -> dict:
    import concurrent.futures as cf
    import multiprocessing as mp
    import types

    from benchmarks.extract import make_corpus

    folder = tempfile.mkdtemp()
    corpus = types.SimpleNamespace(distinct=8, copies=1, min_duration=8, max_duration=14)
    paths, _ = make_corpus(folder, corpus)
    out = {"videos": "8 distinct 720p H.264 30 fps, 8-14 s (benchmarks.extract's corpus)",
           "gpu": torch.cuda.get_device_name(0), "runs": {}}  # fmt: skip
    variants = [("cpu_pyav_1x1", False, 1, 1, "cpu", 6),
                ("nvdec_spin", False, args.processes, args.threads, "nvdec", args.videos),
                ("nvdec_sleep", True, args.processes, args.threads, "nvdec", args.videos)]  # fmt: skip
    ctx = mp.get_context("spawn")
    for name, sleep, procs, threads, decoder, count in variants:
        share = [(paths * count)[i::procs][: max(1, count // procs)] for i in range(procs)]
        barrier = ctx.Barrier(procs)
        with cf.ProcessPoolExecutor(procs, mp_context=ctx, initializer=_start,
                                    initargs=(barrier,)) as pool:  # fmt: skip
            parts = list(pool.map(_cost_worker, [sleep] * procs, [threads] * procs, share,
                                  [decoder] * procs))  # fmt: skip
        n = sum(p["videos"] for p in parts)
        wall = max(p["wall_s"] for p in parts)
        out["runs"][name] = {
            "processes": procs, "threads": threads, "videos": n, "wall_s": wall,
            "videos_per_s": n / wall, "cpu_s_per_video": sum(p["cpu_s"] for p in parts) / n,
            "cores_busy": sum(p["cpu_s"] for p in parts) / wall,
            "blocking_sync_set": all(p["flags_set"] for p in parts),
        }  # fmt: skip
        print(json.dumps({name: out["runs"][name]}), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--cpu-cost", action="store_true")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--videos", type=int, default=96)
    args = parser.parse_args()
    if args.cpu_cost:
        result = cpu_cost(args)
        pathlib.Path(args.out).write_text(json.dumps(result, indent=2))
        return
    folder = pathlib.Path(tempfile.mkdtemp())
    paths = [
        videos.make_video(folder / f"v{i}.mp4", 1280, 720, fps=30, seconds=args.seconds)
        for i in range(2)
    ]
    results = {
        "video": f"1280x720 H.264 (libx264 defaults) 30 fps, {args.seconds:g} s, 2 files",
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "runs": {},
    }
    import av
    import PyNvVideoCodec

    results["pyav"], results["pynvvideocodec"] = av.__version__, PyNvVideoCodec.__version__
    for name, cfg in CONFIGS.items():
        decoder = SnippetDecoder(dataclasses.replace(cfg, decoder="nvdec"), device="cuda")
        for i, path in enumerate(paths):  # the second file reuses the decoder session
            cpu_s, frames, snippets = timed(iter_snippets(path, cfg))
            gpu_s, gpu_frames, gpu_snippets = timed(decoder.iter_snippets(path))
            assert (gpu_frames, gpu_snippets) == (frames, snippets)
            results["runs"][f"{name}/file{i}"] = {
                "frames": frames,
                "snippets": snippets,
                "cpu_frames_per_s": round(frames / cpu_s, 1),
                "nvdec_frames_per_s": round(frames / gpu_s, 1),
                "nvdec_over_cpu": round(cpu_s / gpu_s, 2),
            }
    results["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    pathlib.Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
