"""Where the training step's GPU time goes: its kernels, and the op that launched each.

Builds the job's model and optimizer at ActivityNet's size (``core.train.loop``, channels-last
on CUDA, as the worker builds them), runs a few eager steps of :func:`core.train.step.
train_epoch` (the same kernels the captured step replays) under ``torch.profiler`` and writes:

* ``kernels.txt``: kernel time per step by kernel name, largest first;
* ``attribution.txt``: every kernel of one step above ``--min-us``, in launch order, with the
  ops that launched it (innermost last), e.g. ``ConvolutionBackward0 > aten::sum``;
* ``ops.json``: kernel time per step by the innermost launching op, and the step's total.

    python benchmarks/step_profile.py --output-dir /tmp/profile              # on a GPU machine

It profiles the eager step: a captured graph's replay is one launch the profiler cannot split.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from benchmarks import train as bench  # noqa: E402
from core.train import data, loop, step  # noqa: E402
from core.train.config import OptimSection, TrainConfig  # noqa: E402


def kernel_table(trace: dict, steps: int) -> tuple[list[str], float]:
    """Kernel time per step by name (lines) and the step's total (us)."""
    totals: dict[str, list[float]] = {}
    for e in trace["traceEvents"]:
        if e.get("cat") == "kernel":
            entry = totals.setdefault(e["name"], [0.0, 0])
            entry[0] += e["dur"]
            entry[1] += 1
    total = sum(v[0] for v in totals.values()) / steps
    lines = [f"kernel time per step: {total:.1f} us"] + [
        f"{us / steps:9.1f} us {count / steps:5.1f}x  {name[:150]}"
        for name, (us, count) in sorted(totals.items(), key=lambda kv: -kv[1][0])
    ]
    return lines, total


def attribution(trace: dict, steps: int, min_us: float) -> tuple[list[str], dict[str, float]]:
    """One step's kernels with the ops around their launches, and time per innermost op."""
    events = trace["traceEvents"]
    kernels = sorted((e for e in events if e.get("cat") == "kernel"), key=lambda e: e["ts"])
    launches = {e["args"].get("correlation"): e for e in events if e.get("cat") == "cuda_runtime"}
    ops_by_thread: dict[int, list[dict]] = {}
    for e in events:
        if e.get("cat") == "cpu_op":
            ops_by_thread.setdefault(e["tid"], []).append(e)
    lines, per_op = [], {}
    for kernel in kernels[: len(kernels) // steps]:
        launch = launches.get(kernel["args"].get("correlation"))
        chain = []
        if launch is not None:
            around = [
                o for o in ops_by_thread.get(launch["tid"], [])
                if o["ts"] <= launch["ts"] <= o["ts"] + o["dur"]
            ]  # fmt: skip
            chain = [o["name"] for o in sorted(around, key=lambda o: -o["dur"])]
        innermost = chain[-1] if chain else "(library call)"
        per_op[innermost] = per_op.get(innermost, 0.0) + kernel["dur"]
        if kernel["dur"] >= min_us:
            lines.append(
                f"{kernel['dur']:8.1f} us  {kernel['name'][:70]:70s} | {' > '.join(chain[-5:])}"
            )
    return lines, dict(sorted(per_op.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--videos", type=int, default=512, help="rows on the device")
    parser.add_argument("--feat-dim", type=int, default=400)
    parser.add_argument("--temporal-dim", type=int, default=100)
    parser.add_argument("--num-samples", type=int, default=32)
    parser.add_argument("--cls-head", default="pointwise")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="profiled steps")
    parser.add_argument("--min-us", type=float, default=30.0, help="attribution's threshold")
    args = parser.parse_args(argv)
    args.val_videos, args.signal = 16, 3.0  # what bench.make_corpus reads
    args.output_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    _, _, rows = bench.make_corpus(args)
    cfg = TrainConfig(model=bench.model_cfg(args), batch_size=args.batch, optim=OptimSection())
    state = loop.new_train_state(cfg.model, cfg, str(device), capturable=device.type == "cuda")
    shard = loop.to_device(rows, state.model, device)
    generator = torch.Generator(device=device)
    batches = data.epoch_batches(len(rows), args.batch, args.steps + 3, 0, 0, 0)

    def run(some: list) -> None:
        step.train_epoch(
            state.model, state.model, state.optimizer, shard, some, dtype=dtype,
            grad_clip=cfg.optim.grad_clip_max_norm, generator=generator,
        )  # fmt: skip
        if device.type == "cuda":
            torch.cuda.synchronize()

    run(batches[:3])  # lazy initialisations, cuDNN's and cuBLAS's choices
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run(batches[3:])
    trace_path = args.output_dir / "trace.json"
    prof.export_chrome_trace(str(trace_path))
    trace = json.loads(trace_path.read_text())
    kernels, total = kernel_table(trace, args.steps)
    launched, per_op = attribution(trace, args.steps, args.min_us)
    (args.output_dir / "kernels.txt").write_text("\n".join(kernels) + "\n")
    (args.output_dir / "attribution.txt").write_text("\n".join(launched) + "\n")
    summary = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "args": {k: str(v) for k, v in vars(args).items()},
        "kernel_us_per_step": total,
        "kernel_us_one_step_by_op": per_op,
    }
    (args.output_dir / "ops.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("\n".join(kernels[:30] + [""] + launched))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
