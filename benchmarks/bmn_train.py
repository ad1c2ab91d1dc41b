"""Training throughput of BMN: MMAction2's loss path against ours (fast BM stage, batched targets).

Runs on random features and random ground truth (1-5 segments per video), times whole training
steps (targets, forward, loss, backward, Adam step) after a warm-up, and writes a JSON with the
GPU, torch version, date and samples/s per configuration, plus each one's ratio to MMAction2's
fp32 run measured in the same process.

    python benchmarks/bmn_train.py --output bmn_train.json                  # CUDA, full size
    python benchmarks/bmn_train.py --device cpu --steps 2 --batch 2 --output /tmp/smoke.json

On a CPU the defaults shrink to a smoke test (T = 16, 32 feature channels, one warm-up step);
pass --temporal-dim 100 --feat-dim 400 for full size there.

Configurations: ``upstream`` is ``BMN.forward(list_of_tensors, data_samples, mode='loss')``
(numpy ``generate_labels`` + ``BMNLoss``) at the first --batch; ``ours`` is
``BMNNet.forward_tensors`` + ``make_targets`` + ``compute_loss`` at every --batch; both
in fp32 and under bf16 autocast, ours optionally also compiled (--compile).

Shape legend: B batch, C feature channels, T temporal positions, G segments per video.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import core  # noqa: E402, F401  (upstream shims before mmaction)
from core.models import BMNNet, pad_ground_truth  # noqa: E402

NUM_CLASSES = 20


def model_kwargs(args: argparse.Namespace) -> dict:
    """MMAction2's ActivityNet BMN config at the requested size."""
    return dict(
        temporal_dim=args.temporal_dim,
        boundary_ratio=0.5,
        num_samples=args.num_samples,
        num_samples_per_bin=3,
        feat_dim=args.feat_dim,
        soft_nms_alpha=0.4,
        soft_nms_low_threshold=0.5,
        soft_nms_high_threshold=0.9,
        post_process_top_k=100,
    )


def random_batch(batch: int, args: argparse.Namespace, gen: torch.Generator, device: str) -> dict:
    """Features (B, C, T) and 1-5 sorted random segments per video with labels."""
    feats_BCT = torch.randn(batch, args.feat_dim, args.temporal_dim, generator=gen)
    segments, labels = [], []
    for _ in range(batch):
        n = int(torch.randint(1, 6, (1,), generator=gen))
        seg_G2 = torch.rand(n, 2, generator=gen, dtype=torch.float64).sort(dim=1).values
        segments.append(seg_G2)
        labels.append(torch.randint(0, NUM_CLASSES, (n,), generator=gen))
    return {"feats_BCT": feats_BCT.to(device), "segments": segments, "labels": labels}


def upstream_step_fn(args: argparse.Namespace, batch: dict, device: str) -> tuple[Callable, object]:
    """One training step of MMAction2's BMN through its own loss path."""
    from mmaction.models.localizers import BMN
    from mmaction.structures import ActionDataSample
    from mmengine.structures import InstanceData

    torch.manual_seed(0)
    model = BMN(**model_kwargs(args)).to(device).train()
    optim = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    inputs = list(batch["feats_BCT"])
    samples = []
    for seg_G2 in batch["segments"]:
        sample = ActionDataSample()
        sample.gt_instances = InstanceData(gt_bbox=seg_G2.to(device))
        samples.append(sample)

    def step(autocast) -> None:
        with autocast:
            loss = model(inputs, samples, mode="loss")["loss"]
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)

    return step, model


def ours_step_fn(
    args: argparse.Namespace, batch: dict, device: str, compile_model: bool
) -> tuple[Callable, object]:
    """One training step of ours: batched targets, fast BM stage, action head on."""
    torch.manual_seed(0)
    model = BMNNet(**model_kwargs(args), num_action_classes=NUM_CLASSES).to(device).train()
    optim = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    forward = torch.compile(model.forward_tensors) if compile_model else model.forward_tensors
    feats_BCT = batch["feats_BCT"]
    gt_BG2, valid_BG, labels_BG = pad_ground_truth(batch["segments"], batch["labels"], device)

    def step(autocast) -> None:
        targets = model.make_targets(gt_BG2, valid_BG, labels_BG)
        with autocast:
            outputs = forward(feats_BCT)
        loss = model.compute_loss(outputs, targets)["loss"]
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)

    return step, model


def time_steps(step: Callable, autocast_factory: Callable, args, device: str) -> dict:
    """Warm-up, then ``args.steps`` timed steps between device synchronisations."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(args.warmup):
        step(autocast_factory())
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        step(autocast_factory())
    sync()
    return {"seconds": time.perf_counter() - start}


def run_config(name: str, build: Callable, precision: str, batch: int, args, device: str) -> dict:
    """Builds, times and frees one configuration; an error is recorded, not raised."""
    row = {"name": name, "precision": precision, "batch": batch}
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    def autocast_factory():
        if precision == "bf16":
            return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)
        return nullcontext()

    try:
        step, model = build()
        timing = time_steps(step, autocast_factory, args, device)
        row["samples_per_s"] = args.steps * batch / timing["seconds"]
        row["step_ms"] = 1000 * timing["seconds"] / args.steps
        if device.startswith("cuda"):
            row["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        del step, model
    except (torch.OutOfMemoryError, RuntimeError) as e:  # keep the other rows
        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="JSON file to write")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 64, 128],
                        help="batch sizes for ours; MMAction2's runs at the first")  # fmt: skip
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=None, help="default 5 (CUDA), 1 (CPU)")
    parser.add_argument(
        "--temporal-dim", type=int, default=None, help="default 100 (CUDA), 16 (CPU)"
    )
    parser.add_argument("--feat-dim", type=int, default=None, help="default 400 (CUDA), 32 (CPU)")
    parser.add_argument("--num-samples", type=int, default=32)
    parser.add_argument(
        "--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"]
    )
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (bf16)")
    parser.add_argument("--skip-upstream", action="store_true")
    args = parser.parse_args(argv)
    device = args.device
    full = device.startswith("cuda")  # on a CPU the defaults make a smoke test
    args.warmup = args.warmup if args.warmup is not None else (5 if full else 1)
    args.temporal_dim = args.temporal_dim or (100 if full else 16)
    args.feat_dim = args.feat_dim or (400 if full else 32)
    gen = torch.Generator().manual_seed(0)
    batches = {b: random_batch(b, args, gen, device) for b in sorted(set(args.batch))}
    rows = []
    for precision in args.precisions:
        if not args.skip_upstream:
            b0 = args.batch[0]
            # cudnn.benchmark made MMAction2's bf16 Conv3d stall for minutes on an H100
            torch.backends.cudnn.benchmark = False
            build = lambda b=b0: upstream_step_fn(args, batches[b], device)  # noqa: E731
            rows.append(run_config("upstream", build, precision, b0, args, device))
        torch.backends.cudnn.benchmark = True
        batch_sizes = args.batch if precision == "bf16" else args.batch[:1]
        for b in batch_sizes:
            build = lambda b=b: ours_step_fn(args, batches[b], device, False)  # noqa: E731
            rows.append(run_config("ours", build, precision, b, args, device))
        if args.compile and precision == "bf16":
            for b in args.batch:
                build = lambda b=b: ours_step_fn(args, batches[b], device, True)  # noqa: E731
                rows.append(run_config("ours+compile", build, precision, b, args, device))
    base = next(
        (
            r
            for r in rows
            if r["name"] == "upstream" and r["precision"] == "fp32" and "samples_per_s" in r
        ),
        None,
    )
    for r in rows:
        if base and "samples_per_s" in r:
            r["ratio_vs_upstream_fp32"] = r["samples_per_s"] / base["samples_per_s"]
    report = {
        "benchmark": "bmn_train",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name()
        if device.startswith("cuda")
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "args": vars(args),
        "results": rows,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2))
    for r in rows:
        sps = f"{r['samples_per_s']:9.1f} samples/s" if "samples_per_s" in r else r["error"]
        print(f"{r['name']:>13} {r['precision']:>5} b{r['batch']:<4} {sps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
