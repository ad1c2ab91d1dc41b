"""Training throughput at ActivityNet's size: our loop against MMAction2's, and the Ray Train job.

Synthetic features of ActivityNet's shape (10,000 training videos x 400 channels x 100
positions, 1-3 random segments each, 200 classes; :mod:`core.train.synthetic_features`: the
segments' boundaries at ``--signal`` in three channels and each class as a pattern over all
400 channels at ``--class-signal``, under unit noise, so the Ray run's validation AR and mAP
measure learning) train in three ways, all in one run:

* ``ours``: :func:`core.train.loop.train_epoch`, what every Ray Train worker runs (features on
  the device, batched targets, the GEMM boundary-matching stage, bf16 autocast, the action
  head), whole epochs at the recipe's batch of 16;
* ``upstream``: MMAction2's ``BMN`` in ``loss`` mode (a list of tensors, numpy
  ``generate_labels``, ``BMNLoss``) with the same optimizer, for ``--upstream-steps`` steps
  in fp32 and bf16;
* ``ray``: ``jobs.train``'s trainer with one worker (Ray Data ingest, per-epoch validation and
  checkpoints, final evaluation), when Ray is installed and ``--ray-epochs`` > 0.

    python benchmarks/train.py --output benchmarks/results/train_h100.json      # CUDA
    python benchmarks/train.py --device cpu --videos 64 --val-videos 16 --feat-dim 32 \\
        --temporal-dim 16 --num-samples 8 --batch 8 --epochs 1 --upstream-steps 2 \\
        --ray-epochs 1 --output /tmp/train_smoke.json                         # CPU smoke

What it answers: whether one GPU trains MMAction2's ActivityNet recipe (9 epochs of 10,000
videos at batch 16) in under two minutes, i.e. at 1,000 samples/s or more; MMAction2's own
step runs at about 50 samples/s, which makes that recipe about half an hour.
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
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import core  # noqa: E402, F401  (upstream shims before mmaction)
from core.eval.annotations import parse_annotations  # noqa: E402
from core.train import data, loop, synthetic_features  # noqa: E402
from core.train.config import DataSection, OptimSection, TrainConfig  # noqa: E402

NUM_CLASSES = 200
CONFIG = (
    Path(__file__).resolve().parents[1] / "configs" / "train" / "bmn_cls_400x100_activitynet.py"
)


def model_cfg(args: argparse.Namespace) -> dict:
    """MMAction2's ActivityNet BMN with the action head, at the requested size."""
    return dict(
        type="BMNwActionCls", temporal_dim=args.temporal_dim, boundary_ratio=0.5,
        num_samples=args.num_samples, num_samples_per_bin=3, feat_dim=args.feat_dim,
        soft_nms_alpha=0.4, soft_nms_low_threshold=0.5, soft_nms_high_threshold=0.9,
        post_process_top_k=100, num_action_classes=NUM_CLASSES,
    )  # fmt: skip


def make_corpus(args: argparse.Namespace):
    """The features table, annotations and the training rows in memory."""
    total = args.videos + args.val_videos
    table, annotations = synthetic_features.synthetic_corpus(
        total, args.feat_dim, args.temporal_dim, NUM_CLASSES, seed=0, signal=args.signal,
        val_fraction=args.val_videos / total, class_signal=args.class_signal,
    )  # fmt: skip
    annos = parse_annotations(annotations)
    train, _ = data.split_annotations(annos, DataSection())
    class_of = {name: i for i, name in enumerate(annotations["classes"])}
    index = table.select(["video_id", data.DURATION])
    gt, _ = data.match_ground_truth(train, index, class_of)
    rows = data.collect_shard([data.join_ground_truth(table, gt)], args.feat_dim, args.temporal_dim)
    return table, annotations, rows


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_ours(args: argparse.Namespace, rows: data.ShardArrays) -> dict:
    """Whole epochs of the workers' loop (one process, no Ray)."""
    device = torch.device(args.device)
    cfg = TrainConfig(model=model_cfg(args), batch_size=args.batch, optim=OptimSection())
    state = loop.new_train_state(cfg.model, cfg, str(device))
    shard = loop.to_device(rows, device)
    steps = len(shard) // args.batch
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    warm = data.epoch_batches(len(shard), args.batch, min(5, steps), 0, 99, 0)
    loop.train_epoch(state.model, state.model, state.optimizer, shard, warm, dtype=dtype)
    epochs = []
    for epoch in range(args.epochs):
        batches = data.epoch_batches(len(shard), args.batch, steps, cfg.seed, epoch, 0)
        generator = loop.seed_epoch(cfg.seed, epoch, 0, device)
        sync(args.device)
        start = time.perf_counter()
        losses = loop.train_epoch(
            state.model, state.model, state.optimizer, shard, batches, dtype=dtype,
            grad_clip=cfg.optim.grad_clip_max_norm, generator=generator,
        )  # fmt: skip
        sync(args.device)
        seconds = time.perf_counter() - start
        epochs.append({"seconds": seconds, "samples_per_s": steps * args.batch / seconds,
                       "loss": losses["loss"]})  # fmt: skip
    mean_epoch = float(np.mean([e["seconds"] for e in epochs]))
    out = {"dtype": dtype, "batch": args.batch, "steps_per_epoch": steps, "epochs": epochs,
           "samples_per_s": steps * args.batch / mean_epoch, "epoch_seconds": mean_epoch,
           "nine_epochs_seconds": 9 * mean_epoch}  # fmt: skip
    if device.type == "cuda":
        out["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def bench_upstream(args: argparse.Namespace, rows: data.ShardArrays, precision: str) -> dict:
    """MMAction2's own training step (its BMN, loss mode) on the same rows and optimizer."""
    from mmaction.models.localizers import BMN
    from mmaction.structures import ActionDataSample
    from mmengine.structures import InstanceData

    torch.backends.cudnn.benchmark = False  # it made bf16 Conv3d stall for minutes on an H100
    torch.manual_seed(0)
    kwargs = {k: v for k, v in model_cfg(args).items() if k not in ("type", "num_action_classes")}
    model = BMN(**kwargs).to(args.device).train()
    optim = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if (
        precision == "bf16" and args.device.startswith("cuda")) else nullcontext  # fmt: skip
    batches = data.epoch_batches(len(rows), args.batch, args.upstream_steps + 2, 0, 0, 0)

    def step(idx_B: np.ndarray) -> None:
        inputs = list(torch.from_numpy(rows.feats_NCT[idx_B]).to(args.device))
        samples = []
        for i in idx_B:
            sample = ActionDataSample()
            sample.gt_instances = InstanceData(gt_bbox=torch.from_numpy(rows.gt[i][:, :2]))
            samples.append(sample)
        with autocast():
            loss = model(inputs, samples, mode="loss")["loss"]
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 40.0)
        optim.step()

    for idx_B in batches[:2]:  # warm-up
        step(idx_B)
    sync(args.device)
    start = time.perf_counter()
    for idx_B in batches[2:]:
        step(idx_B)
    sync(args.device)
    seconds = time.perf_counter() - start
    rate = args.upstream_steps * args.batch / seconds
    return {"precision": precision, "batch": args.batch, "steps": args.upstream_steps,
            "samples_per_s": rate, "epoch_seconds_estimate": args.videos / rate}  # fmt: skip


def bench_ray(args: argparse.Namespace, table, annotations) -> dict:
    """jobs.train's trainer, one worker, on the same features written as Parquet."""
    import ray

    from core import config
    from core.train.trainer import run_training

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        start = time.perf_counter()
        synthetic_features.write_table(
            os.path.join(tmp, "feats"), table, annotations, rows_per_file=1024
        )
        write_seconds = time.perf_counter() - start
        use_gpu = args.device.startswith("cuda")
        options = {"epochs": args.ray_epochs, "batch_size": args.batch,
                   "scaling.num_workers": 1, "scaling.use_gpu": use_gpu,
                   "scaling.cpus_per_worker": 2, "checkpoint.num_to_keep": 1,
                   "model": model_cfg(args)}  # fmt: skip
        cfg, raw = config.load(str(CONFIG), TrainConfig, options)
        cpus = max(os.cpu_count() or 1, 4)  # the worker's 2, and some for Ray Data's reads
        ray.init(num_cpus=cpus, num_gpus=1 if use_gpu else 0, include_dashboard=False)
        try:
            start = time.perf_counter()
            summary = run_training(
                cfg, raw, os.path.join(tmp, "feats"), os.path.join(tmp, "feats", "annotations.json"),
                os.path.join(tmp, "run"),
            )  # fmt: skip
            wall = time.perf_counter() - start
        finally:
            ray.shutdown()
    history = summary.history
    train_s = sum(h["train_seconds"] for h in history)
    val_s = sum(h["val_seconds"] for h in history)
    return {
        "workers": 1, "epochs": len(history), "wall_seconds": wall,
        "parquet_write_seconds": write_seconds,
        "train_samples_per_s": [h["samples_per_s"] for h in history],
        "train_seconds": train_s, "val_seconds_per_epoch": val_s / len(history),
        "overhead_seconds": wall - train_s - val_s,
        "final_metrics": {k: v for k, v in (summary.metrics or {}).items()
                          if isinstance(v, (int, float))},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="JSON file to write")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--videos", type=int, default=10_000, help="training videos")
    parser.add_argument("--val-videos", type=int, default=1_000, help="for the Ray run")
    parser.add_argument("--feat-dim", type=int, default=400)
    parser.add_argument("--temporal-dim", type=int, default=100)
    parser.add_argument("--num-samples", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--upstream-steps", type=int, default=30)
    parser.add_argument("--ray-epochs", type=int, default=2, help="0 skips the Ray run")
    parser.add_argument("--signal", type=float, default=1.0, help="boundary signal")
    parser.add_argument("--class-signal", type=float, default=0.3, help="class pattern scale")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    table, annotations, rows = make_corpus(args)
    report = {
        "benchmark": "train",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda")
        else platform.processor() or "cpu",
        "torch": torch.__version__, "args": vars(args),
        "corpus_seconds": time.perf_counter() - start,
    }  # fmt: skip
    report["ours"] = bench_ours(args, rows)
    report["upstream"] = [bench_upstream(args, rows, p) for p in ("fp32", "bf16")]
    base = report["upstream"][0]["samples_per_s"]
    report["ours"]["ratio_vs_upstream_fp32"] = report["ours"]["samples_per_s"] / base
    if args.ray_epochs > 0:
        try:
            report["ray"] = bench_ray(args, table, annotations)
        except ImportError as e:
            report["ray"] = {"skipped": f"{type(e).__name__}: {e}"}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2))
    ours = report["ours"]
    print(f"ours     {ours['samples_per_s']:9.1f} samples/s, epoch {ours['epoch_seconds']:.1f} s, "
          f"9 epochs {ours['nine_epochs_seconds']:.1f} s")  # fmt: skip
    for up in report["upstream"]:
        print(f"upstream {up['samples_per_s']:9.1f} samples/s ({up['precision']}), "
              f"epoch ~{up['epoch_seconds_estimate']:.0f} s")  # fmt: skip
    if "wall_seconds" in report.get("ray", {}):
        r = report["ray"]
        print(f"ray      {r['epochs']} epochs in {r['wall_seconds']:.1f} s wall, train "
              f"{np.mean(r['train_samples_per_s']):.1f} samples/s, overhead "
              f"{r['overhead_seconds']:.1f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
