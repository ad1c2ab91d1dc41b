"""S3 inputs streamed (range reads with read-ahead) against downloaded whole before decoding.

Against a moto S3 server on loopback, directly and through a pacing proxy that adds a
first-byte latency to every request and caps bandwidth (per connection, like one S3 stream,
or shared by all connections, like a saturated network link); loopback alone is faster than
any real store. Two parts, both in one run:

* per video: the extract actor's own input path (``core.pipeline.stages._fetch`` and
  ``_snippets`` with the CPU decoder and the demo config's sampling), timing the first
  snippet batch and the whole video, streamed (``storage.stream_inputs=True``) and whole;
* the job: ``python -m jobs.extract`` (CPU, the demo config) over an S3 corpus through the
  proxy, streamed and whole, with its wall time and run record.

The videos are 720p H.264 at about 8 Mbit/s (a moving pattern under per-frame noise, so the
encoder cannot shrink them), tens of MB each; one keeps its index at the end (the reader
fetches the tail first), one is ``+faststart``. moto, the proxy and the decoder share this
machine's CPUs, so while a streamed video downloads the serving costs compete with decoding:
a real store's serving costs are not on the decoding machine.

Usage::

    python -m benchmarks.s3_inputs --output benchmarks/results/s3_inputs_cpu.json \
        [--work-dir /tmp/s3_inputs_bench] [--seconds 40] [--repeats 2] [--job-videos 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
from fractions import Fraction

import av
import numpy as np

from core import storage
from core.config import StorageSection
from tests.integration.loopback_proxy import LoopbackProxy, Request

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "extract" / "demo.py")
CHUNK = 64 * 1024

PROFILES = {
    "loopback": dict(latency_ms=0.0, conn_mbps=None, total_mbps=None),
    "30ms_40MBps_per_connection": dict(latency_ms=30.0, conn_mbps=40.0, total_mbps=None),
    "30ms_10MBps_shared": dict(latency_ms=30.0, conn_mbps=None, total_mbps=10.0),
}
"""Where the store is: ``latency_ms`` before each response's first byte; MB/s (10^6 bytes)
per connection and for all connections together (None: no cap)."""
JOB_PROFILE = "30ms_40MBps_per_connection"


# ----------------------------------------------------------------------------- the store


class PacingProxy(LoopbackProxy):
    """A loopback proxy in front of the S3 server: each response waits ``latency_ms`` before
    its first byte, and bodies flow at most ``conn_mbps`` per connection and ``total_mbps``
    over all of them (MB/s; None: no cap), streamed through as the server sends them."""

    timeout_s = 120

    def __init__(self, upstream: str, latency_ms: float, conn_mbps, total_mbps) -> None:
        super().__init__(upstream)
        self.latency_s = latency_ms / 1000
        self.conn_rate = conn_mbps * 1e6 if conn_mbps else None
        self.total_rate = total_mbps * 1e6 if total_mbps else None
        self.next_free = 0.0  # when the shared link can send its next chunk
        self.requests = 0

    def pace(self, nbytes: int, conn_next: float) -> float:
        """Sleeps until ``nbytes`` more may go; returns the connection's next free time."""
        now = time.perf_counter()
        start = max(now, conn_next)
        if self.total_rate:
            with self.lock:
                start = max(start, self.next_free)
                self.next_free = start + nbytes / self.total_rate
        if start > now:
            time.sleep(start - now)
        return start + (nbytes / self.conn_rate if self.conn_rate else 0.0)

    def handle(self, request: Request) -> None:
        with self.lock:
            self.requests += 1
        body = request.read_body()
        started = time.perf_counter()
        conn, resp = request.open_upstream(body)
        length = resp.getheader("Content-Length")
        data = None if length is not None else resp.read()
        wait = self.latency_s - (time.perf_counter() - started)
        if wait > 0:
            time.sleep(wait)
        request.send_head(resp.status, resp.getheaders(), length or len(data))
        if request.command != "HEAD":
            chunks = iter(lambda: resp.read(CHUNK), b"") if data is None else [data]
            conn_next = time.perf_counter()
            for chunk in chunks:
                conn_next = self.pace(len(chunk), conn_next)
                request.wfile.write(chunk)
        conn.close()


@contextlib.contextmanager
def moto_server():
    """A moto S3 server on loopback with a fresh bucket; yields (endpoint, bucket URI)."""
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL_S3=endpoint)  # fmt: skip
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench-inputs")
    try:
        yield endpoint, "s3://bench-inputs"
    finally:
        server.stop()


@contextlib.contextmanager
def store(endpoint: str, profile: str):
    """The endpoint of ``profile`` (moto itself for loopback), in force for this process."""
    settings = PROFILES[profile]
    if settings["latency_ms"] == 0 and not settings["conn_mbps"] and not settings["total_mbps"]:
        proxy_cm = contextlib.nullcontext(None)
    else:
        proxy_cm = PacingProxy(endpoint, **settings)
    with proxy_cm as proxy:
        os.environ["AWS_ENDPOINT_URL_S3"] = proxy.endpoint if proxy else endpoint
        try:
            yield os.environ["AWS_ENDPOINT_URL_S3"]
        finally:
            os.environ["AWS_ENDPOINT_URL_S3"] = endpoint


# ----------------------------------------------------------------------------- the videos


def make_video(path: pathlib.Path, seconds: float, faststart: bool) -> pathlib.Path:
    """720p H.264 at 30 fps, about 8 Mbit/s: a drifting gradient under per-frame noise."""
    if path.exists():
        return path
    width, height, fps = 1280, 720, 30
    rng = np.random.default_rng(0)
    noise_KHW1 = rng.integers(-24, 24, size=(8, height, width, 1), dtype=np.int16)
    x_1W = np.linspace(0, 200, width, dtype=np.float32)[None, :]
    y_H1 = np.linspace(0, 200, height, dtype=np.float32)[:, None]
    tmp = path.with_suffix(".part.mp4")
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(tmp), mode="w", format="mp4", options=options) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 8_000_000
        stream.codec_context.options = {"preset": "ultrafast"}
        for i in range(round(seconds * fps)):
            base_HW3 = np.stack([(x_1W + 3 * i) % 256 + 0 * y_H1, y_H1 + 0 * x_1W,
                                 (x_1W + y_H1 - 2 * i) % 256], axis=-1)  # fmt: skip
            frame_HW3 = np.clip(base_HW3 + noise_KHW1[i % 8], 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(frame_HW3, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    tmp.rename(path)
    return path


# ----------------------------------------------------------------------------- per video


def time_video(uri: str, settings: StorageSection, sampling) -> dict:
    """Seconds to the first snippet batch and to the end of one video, through the actor's
    own input path; ``fetch_s``: until the input is ready (the whole download when not
    streamed)."""
    from core.pipeline.stages import _fetch, _snippets
    from core.video.backend import SnippetDecoder

    decoder = SnippetDecoder(sampling, device="cpu")
    fs, _ = storage.filesystem(uri)
    fs.invalidate_cache()
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        source = _fetch(stack, uri, settings)
        fetched = time.perf_counter() - t0
        first, snippets = None, 0
        for batch in _snippets(decoder, source):
            first = first if first is not None else time.perf_counter() - t0
            snippets += len(batch.clips_NTHWC)
    total = time.perf_counter() - t0
    return dict(first_snippet_s=round(first, 3), total_s=round(total, 3),
                fetch_s=round(fetched, 3), snippets=snippets)  # fmt: skip


def per_video(endpoint: str, bucket: str, files: list[pathlib.Path], repeats: int) -> dict:
    from core.video import SamplingConfig

    sampling = SamplingConfig(
        clip_len=1,
        clip_interval=4,
        frame_interval=1,
        short_side=64,
        crop_size=64,
        batch_size=32,
        decode_threads=1,
    )  # demo config
    modes = {"streamed": StorageSection(stream_inputs=True),
             "whole": StorageSection(stream_inputs=False)}  # fmt: skip
    out = {}
    for profile in PROFILES:
        with store(endpoint, profile):
            rows = {}
            for path in files:
                uri = f"{bucket}/videos/{path.name}"
                storage.exists(uri)  # the S3 client of this endpoint made before timing
                runs: dict[str, list[dict]] = {mode: [] for mode in modes}
                for _ in range(repeats):  # modes alternate, so that drift hits both
                    for mode, settings in modes.items():
                        runs[mode].append(time_video(uri, settings, sampling))
                for mode in modes:
                    rows[f"{path.name}/{mode}"] = summarize(runs[mode])
                    print(profile, path.name, mode, rows[f"{path.name}/{mode}"], flush=True)
            out[profile] = rows
    return out


def summarize(runs: list[dict]) -> dict:
    keys = ("first_snippet_s", "total_s", "fetch_s")
    row = {f"{k}_median": round(statistics.median(r[k] for r in runs), 3) for k in keys}
    row |= {f"{k}_best": min(r[k] for r in runs) for k in keys}  # least disturbed by others
    row["runs"] = runs
    return row


# ----------------------------------------------------------------------------- the job


def job_runs(endpoint: str, bucket: str, files: list[pathlib.Path], num_videos: int,
             repeats: int) -> dict:  # fmt: skip
    """``jobs.extract`` over ``num_videos`` S3 videos through the job profile's proxy."""
    names = []
    for i in range(num_videos):
        src = files[i % len(files)]
        name = f"job_{i:02d}{src.suffix}"
        storage.put_file(str(src), f"{bucket}/job/{name}")
        names.append(name)
    out: dict = {"profile": JOB_PROFILE, "videos": num_videos, "runs": []}
    with store(endpoint, JOB_PROFILE) as proxied:
        for r in range(repeats):
            for mode in ("whole", "streamed"):
                output = f"{bucket}/job_out/{mode}_{r}"
                cmd = [sys.executable, "-m", "jobs.extract", "--config", CONFIG, "--num-cpus",
                       "2", "--input", f"{bucket}/job/", "--output", output, "--cfg-options",
                       f"storage.stream_inputs={mode == 'streamed'}"]  # fmt: skip
                env = {**os.environ, "AWS_ENDPOINT_URL_S3": proxied}
                for _ in range(2):  # a second try when Ray itself timed out starting (load)
                    t0 = time.perf_counter()
                    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
                    wall = time.perf_counter() - t0
                    if "timed out during startup" not in done.stderr:
                        break
                if done.returncode != 0:
                    raise RuntimeError(f"{mode} job failed: {done.stderr[-3000:]}")
                run_id = re.search(r"^run (\S+):", done.stdout, re.M).group(1)
                record = storage.read_json(f"{output}/_runs/{run_id}/record.json")
                row = dict(mode=mode, repeat=r, wall_s=round(wall, 2),
                           summary=done.stdout.strip().splitlines()[:2], record=record)  # fmt: skip
                out["runs"].append(row)
                print(mode, r, f"wall {wall:.1f} s", row["summary"], flush=True)
    for mode in ("whole", "streamed"):
        walls = [row["wall_s"] for row in out["runs"] if row["mode"] == mode]
        out[f"{mode}_wall_s_median"] = round(statistics.median(walls), 2)
    return out


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--work-dir", default="/tmp/s3_inputs_bench")
    parser.add_argument("--seconds", type=float, default=40.0, help="length of each video")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--job-videos", type=int, default=4)
    parser.add_argument("--job-repeats", type=int, default=1)
    parser.add_argument("--skip-job", action="store_true")
    args = parser.parse_args()

    load_at_start = os.getloadavg()  # the machine is shared: how busy it was
    work = pathlib.Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    files = [make_video(work / f"720p_{args.seconds:g}s_index_at_end.mp4", args.seconds, False),
             make_video(work / f"720p_{args.seconds:g}s_faststart.mp4", args.seconds, True)]  # fmt: skip
    print(f"videos ready in {time.perf_counter() - t0:.0f} s", flush=True)
    result: dict = {
        "benchmark": "s3_inputs",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": dict(
            platform=platform.platform(),
            python=platform.python_version(),
            cpus=os.cpu_count(),
            av=av.__version__,
        ),  # fmt: skip
        "profiles": PROFILES,
        "stream_settings": {k: v for k, v in vars(StorageSection()).items() if k != "endpoint_url"},
        "videos": {
            p.name: dict(bytes=p.stat().st_size, seconds=args.seconds, fps=30, size="1280x720")
            for p in files
        },  # fmt: skip
        "command": " ".join(
            [os.path.basename(sys.executable), "-m", "benchmarks.s3_inputs", *sys.argv[1:]]
        ),  # fmt: skip
    }
    with moto_server() as (endpoint, bucket):
        for path in files:
            storage.put_file(str(path), f"{bucket}/videos/{path.name}")
        result["per_video"] = per_video(endpoint, bucket, files, args.repeats)
        pathlib.Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
        if not args.skip_job:
            result["job"] = job_runs(endpoint, bucket, files, args.job_videos, args.job_repeats)
    result["load_average_1_5_15_min"] = dict(start=load_at_start, end=os.getloadavg())
    pathlib.Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "job"}, indent=2)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
