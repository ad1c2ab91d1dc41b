"""Data-parallel scaling of jobs.train: 1 and N workers, the same global batch, the same data.

Writes synthetic features that encode their ground truth (core.train.synthetic_features),
trains on them with ``core.train.trainer.run_training`` (what ``python -m jobs.train`` runs) once per worker
count, and reports training samples/s (epochs after the first, which includes warm-up),
scaling efficiency ``(rate_N / rate_1) / N``, wall time and the final validation metrics
(which should agree across worker counts up to the different data partition).

    python benchmarks/train_scaling.py --use-gpu --workers 1 2 4 8 \\
        --output benchmarks/results/train_scaling_cuda.json                   # one GPU each
    python benchmarks/train_scaling.py --config configs/train/demo.py --videos 96 \\
        --val-videos 24 --cfg-options model.feat_dim=32 model.temporal_dim=16 epochs=3 \\
        --output /tmp/train_scaling_cpu.json                                  # CPU, gloo
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from mmengine.config import DictAction

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import core  # noqa: E402, F401  (upstream shims before mmaction)
from core import config  # noqa: E402
from core.train import TrainConfig, synthetic_features  # noqa: E402
from core.train.trainer import run_training  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
METRICS = ("AR@1", "AR@10", "AR@100", "AUC", "mAP", "mAP@0.5")


def run_once(cfg_path: str, options: dict, workers: int, features: str, annotations: str,
             output: str) -> dict:  # fmt: skip
    """One training run with ``workers`` workers; its rates, times and metrics."""
    cfg, raw = config.load(cfg_path, TrainConfig, {**options, "scaling.num_workers": workers})
    start = time.perf_counter()
    summary = run_training(cfg, raw, features, annotations, output)
    wall = time.perf_counter() - start
    rates = [h["samples_per_s"] for h in summary.history]
    steady = rates[1:] or rates
    return {
        "workers": workers, "per_worker_batch": cfg.batch_size // workers,
        "global_batch": cfg.batch_size, "epochs": len(rates), "wall_seconds": wall,
        "samples_per_s_per_epoch": rates, "samples_per_s": float(np.mean(steady)),
        "train_seconds": sum(h["train_seconds"] for h in summary.history),
        "metrics": {k: summary.metrics[k] for k in METRICS if k in (summary.metrics or {})},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="JSON file to write")
    parser.add_argument(
        "--config", default=str(REPO / "configs/train/bmn_cls_400x100_activitynet.py")
    )
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default=None)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--use-gpu", action="store_true", help="one GPU per worker (NCCL)")
    parser.add_argument("--cpus-per-worker", type=int, default=1)
    parser.add_argument("--videos", type=int, default=2_000, help="training videos")
    parser.add_argument("--val-videos", type=int, default=500)
    parser.add_argument("--num-classes", type=int, default=20)
    args = parser.parse_args(argv)
    import ray

    options = dict(args.cfg_options or {})
    options.update({"scaling.use_gpu": args.use_gpu, "scaling.cpus_per_worker":
                    args.cpus_per_worker, "model.num_action_classes": args.num_classes,
                    "checkpoint.num_to_keep": 1})  # fmt: skip
    cfg, _ = config.load(args.config, TrainConfig, options)
    C, T = cfg.model["feat_dim"], cfg.model["temporal_dim"]
    most = max(args.workers)
    ray.init(
        num_cpus=max(os.cpu_count() or 1, most * args.cpus_per_worker + 2),
        num_gpus=most if args.use_gpu else 0, include_dashboard=False,
    )  # fmt: skip
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        total = args.videos + args.val_videos
        table, annotations = synthetic_features.synthetic_corpus(
            total, C, T, args.num_classes, seed=0, val_fraction=args.val_videos / total
        )
        anno_uri = synthetic_features.write_table(
            os.path.join(tmp, "feats"), table, annotations, 1024
        )
        for n in args.workers:
            out = os.path.join(tmp, f"run_{n}")
            runs.append(
                run_once(args.config, options, n, os.path.join(tmp, "feats"), anno_uri, out)
            )
    ray.shutdown()
    base = next((r for r in runs if r["workers"] == 1), runs[0])
    for r in runs:
        speedup = r["samples_per_s"] / base["samples_per_s"]
        r["speedup"] = speedup
        r["scaling_efficiency"] = speedup / (r["workers"] / base["workers"])
    report = {
        "benchmark": "train_scaling",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": _device_name(args.use_gpu), "backend": "nccl" if args.use_gpu else "gloo",
        "args": vars(args), "features": {"videos": args.videos, "val_videos": args.val_videos,
                                          "C": C, "T": T},
        "runs": runs,
    }  # fmt: skip
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2))
    for r in runs:
        print(f"{r['workers']} worker(s): {r['samples_per_s']:9.1f} samples/s, efficiency "
              f"{r['scaling_efficiency']:.2f}, wall {r['wall_seconds']:.0f} s, "
              f"AUC {r['metrics'].get('AUC', float('nan')):.2f}")  # fmt: skip
    return 0


def _device_name(use_gpu: bool) -> str:
    if use_gpu:
        import torch

        return torch.cuda.get_device_name()
    return platform.processor() or "cpu"


if __name__ == "__main__":
    sys.exit(main())
