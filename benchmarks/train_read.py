"""How fast a training worker reads its rows (:func:`core.train.data.read_shards`) with
Arrow's CPU pool as Ray leaves it (``OMP_NUM_THREADS`` = the worker's CPUs) and widened for
the read (:func:`core.train.data.arrow_threads`), in the same run.

Writes ``--files`` feature files of 1,024 videos (400 × 100 float32, as the training benchmark
lays them out), then reads all their rows in fresh processes with
``OMP_NUM_THREADS=--omp``, the two variants alternating, ``--repeats`` times each after one
untimed read (the page cache warm for both).

    python benchmarks/train_read.py --output benchmarks/results/train_read_cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

READ = """
import contextlib, json, sys, time
import pyarrow as pa
from core.train import data
from core.train.config import DataSection
features, widen = sys.argv[1], sys.argv[2] == "1"
if not widen:
    data.arrow_threads = lambda count: contextlib.nullcontext()
ts = data.prepare_training_set(features, features + "/annotations.json", DataSection())
wanted = {split: sorted(ts.gt[split]) for split in (data.TRAIN, data.VAL)}
pool = pa.cpu_count()
start = time.perf_counter()
shards = data.read_shards(ts, wanted, "cpu", device_splits=[data.TRAIN])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "arrow_pool": pool, "rows": sum(map(len, shards.values()))}))
"""


def read_once(features: str, widen: bool, omp: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(omp), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", READ, features, "1" if widen else "0"], env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--files", type=int, default=4, help="files of 1,024 videos")
    parser.add_argument("--omp", type=int, default=1, help="OMP_NUM_THREADS, as Ray sets it")
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args(argv)

    from benchmarks import train as bench

    corpus = argparse.Namespace(
        videos=args.files * 1024 * 7 // 8, val_videos=args.files * 1024 // 8, feat_dim=400,
        temporal_dim=100, num_samples=32, cls_head="pointwise", signal=3.0,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-read-") as tmp:
        table, annotations, _ = bench.make_corpus(corpus)
        features, _, write_seconds = bench.write_features(tmp, table, annotations)
        del table
        read_once(features, True, args.omp)  # the page cache warm for both variants
        runs: dict[str, list[dict]] = {"ray_default_pool": [], "widened_pool": []}
        for _ in range(args.repeats):
            runs["ray_default_pool"].append(read_once(features, False, args.omp))
            runs["widened_pool"].append(read_once(features, True, args.omp))
    median = {k: sorted(r["seconds"] for r in v)[len(v) // 2] for k, v in runs.items()}
    report = {
        "benchmark": "train_read",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(), "cpu_cores": os.cpu_count(),
        "args": vars(args), "rows": runs["widened_pool"][0]["rows"],
        "gigabytes": runs["widened_pool"][0]["rows"] * 400 * 100 * 4 / 1e9,
        "parquet_write_seconds": write_seconds, "runs": runs, "median_seconds": median,
        "speedup": median["ray_default_pool"] / median["widened_pool"],
    }  # fmt: skip
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("rows", "gigabytes", "median_seconds", "speedup")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
