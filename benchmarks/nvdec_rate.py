"""Decode rate of one video stream, CPU (PyAV, one thread as an extract actor) against NVDEC
(``sampling.decoder='nvdec'``), from file to the uint8 clips the recognizer takes, for the
production TSN and SlowOnly sampling. One process, one stream at a time: not the extract job.

Usage (on a GPU machine with PyAV and PyNvVideoCodec):
    python -m benchmarks.nvdec_rate --out results.json [--seconds 20]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
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
