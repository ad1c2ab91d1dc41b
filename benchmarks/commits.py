"""Start-up cost of an extract run against the number of committed batches in its output.

    python -m benchmarks.commits --output benchmarks/results/commits_cpu.json

What a run reads before it starts is :func:`core.io.index.committed_videos`: the index files
that drivers write (one per run and half minute of it), plus the markers of runs whose index
is not complete (what a killed run committed after its last index write). The baseline,
measured in the same run on the same output, reads every batch's marker, as a protocol without
an index must. Outputs are made directly (markers, index parts; 64 videos a batch), on the
local disk and on a moto S3 server on loopback.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import os
import pathlib
import platform
import socket
import tempfile
import time

import pyarrow as pa

from core import storage
from core.io import commits, index

VIDEOS_PER_BATCH = 64
BATCHES_PER_INDEX_PART = 100


def make_output(out: str, num_batches: int, unindexed: int) -> None:
    """A finished run's ``num_batches - unindexed`` batches (markers, complete index) and a
    killed run's ``unindexed`` batches (markers only, as if killed before its index write)."""

    def marker(b: int) -> None:
        run = "r" if b < num_batches - unindexed else "killed"
        ids = [f"v{b:06d}_{i:02d}" for i in range(VIDEOS_PER_BATCH)]
        body = {"batch_id": f"{b:032x}", "run_id": run, "video_ids": ids, "failed": [],
                "rows": {"features": VIDEOS_PER_BATCH}, "files": {}}  # fmt: skip
        storage.write_json(storage.join(out, commits.COMMITS_DIR, run, f"{b:032x}.json"), body)

    with cf.ThreadPoolExecutor(32) as pool:
        list(pool.map(marker, range(num_batches)))
    indexed = num_batches - unindexed
    for part, start in enumerate(range(0, indexed, BATCHES_PER_INDEX_PART)):
        batches = range(start, min(start + BATCHES_PER_INDEX_PART, indexed))
        vids = [f"v{b:06d}_{i:02d}" for b in batches for i in range(VIDEOS_PER_BATCH)]
        table = pa.table({"video_id": vids,
                          "batch_id": [f"{b:032x}" for b in batches for _ in range(VIDEOS_PER_BATCH)],
                          "ok": [True] * len(vids)}, schema=index.INDEX_SCHEMA)  # fmt: skip
        uri = storage.join(out, index.INDEX_DIR, "r", f"part-{part:06d}.parquet")
        storage.write_bytes(uri, commits.parquet_bytes(table))
    storage.write_text(storage.join(out, index.INDEX_DIR, "r", "complete"), "")


def every_marker(out: str) -> int:
    """The baseline: every marker read (threaded as ours is)."""
    uris = storage.list_files(storage.join(out, commits.COMMITS_DIR), (".json",))
    with cf.ThreadPoolExecutor(16) as pool:
        return sum(len(m["video_ids"]) for m in pool.map(storage.read_json, uris))


def measure(out: str, num_batches: int, unindexed: int) -> dict:
    make_output(out, num_batches, unindexed)
    ours, baseline = [], []
    for _ in range(3):  # alternating, best of 3: neither side gets a colder cache
        t0 = time.perf_counter()
        done = index.committed_videos(out)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        baseline_videos = every_marker(out)
        baseline.append(time.perf_counter() - t0)
    ours, baseline = min(ours), min(baseline)
    assert len(done) == baseline_videos == num_batches * VIDEOS_PER_BATCH
    return {"batches": num_batches, "videos": len(done), "unindexed_batches": unindexed,
            "objects_read": -(-(num_batches - unindexed) // BATCHES_PER_INDEX_PART) + unindexed,
            "seconds": round(ours, 4), "baseline_every_marker_seconds": round(baseline, 4),
            "baseline_objects_read": num_batches, "speedup": round(baseline / ours, 1)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--local", default="100,1000,10000")
    parser.add_argument("--s3", default="100,1000")
    args = parser.parse_args()
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version(),
              "videos_per_batch": VIDEOS_PER_BATCH, "local": [], "s3_moto": []}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for n in map(int, args.local.split(",")):
            result["local"].append(measure(f"{tmp}/out{n}", n, unindexed=min(n, 10)))
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x",
                      AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{port}")  # fmt: skip
    import boto3

    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}").create_bucket(Bucket="bench")
    try:
        for n in map(int, args.s3.split(",")):
            result["s3_moto"].append(measure(f"s3://bench/out{n}", n, unindexed=min(n, 10)))
    finally:
        server.stop()
    pathlib.Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
