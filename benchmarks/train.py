"""The training job at ActivityNet's size on one GPU, its time split, and the step against MMAction2's.

Synthetic features of ActivityNet's shape (10,000 training and 1,000 validation videos x 400
channels x 100 positions, 1-3 random segments each, 200 classes) that locate the segments
and tell their classes apart under noise (:mod:`core.train.synthetic_features`, ``--signal``
3: class patterns at 1.5 times the noise per channel), so the job's mAP measures learning
(labels at random would score about 1/200), all in one run:

* ``job``: ``python -m jobs.train`` as a user runs it (a subprocess, one GPU worker, the
  ActivityNet config's recipe: 9 epochs at global batch 16, per-epoch validation and
  checkpoints, the final task), timed from the process start to its exit (metrics.json is
  written before it), with the job's own split of the time; ``--job-root`` runs another
  checkout's job on the same features (the code before a change);
* ``step``: :func:`core.train.step.train_epoch` on the same rows, eager and as the captured
  CUDA graph (:class:`core.train.step.GraphedStep`, what the job's worker runs), with the
  largest difference between the two paths' losses over the same steps; and the captured
  step in the default memory layout with unfused Adam (``graph_default_layout``, the step
  before channels-last), the captured step with cuDNN's grouped kernels for the grouped 1-d
  convolutions (``graph_grouped_conv``, the step before their dense block-diagonal form), the
  captured step with the candidate forms of :data:`CANDIDATES` (the boundary-matching GEMM
  with its bias and ReLU fused, with and without the batched channel projection; ``x_2d_p``'s
  bias gradients as GEMVs; both), each with ``<mode>_speedup`` over ``graph``, and the
  captured step with the ``span`` head (``graph_span_head``, the configs' default head);
* ``upstream``: MMAction2's ``BMN`` in ``loss`` mode (a list of tensors, numpy
  ``generate_labels``, ``BMNLoss``) with the same optimizer, ``--upstream-steps`` steps in
  fp32 and bf16: the baseline measured in the same run.

    python benchmarks/train.py --output benchmarks/results/train_h200.json      # CUDA
    python benchmarks/train.py --device cpu --videos 64 --val-videos 16 --feat-dim 32 \\
        --temporal-dim 16 --num-samples 8 --batch 8 --epochs 1 --upstream-steps 2 \\
        --step-steps 4 --output /tmp/train_smoke.json                           # CPU smoke
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
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import core  # noqa: E402, F401  (upstream shims before mmaction)
from core import runtime  # noqa: E402
from core.eval.annotations import parse_annotations  # noqa: E402
from core.models.bm_layer import BoundaryMatchingConv  # noqa: E402
from core.models.network import GemvBiasConv2d, GroupedConv1d  # noqa: E402
from core.train import data, loop, step, synthetic_features  # noqa: E402
from core.train.config import DataSection, OptimSection, TrainConfig  # noqa: E402

NUM_CLASSES = 200
CONFIG = "configs/train/bmn_cls_400x100_activitynet.py"


def model_cfg(args: argparse.Namespace, cls_head: str | None = None) -> dict:
    """MMAction2's ActivityNet BMN with the action head, at the requested size."""
    return dict(
        type="BMNwActionCls", temporal_dim=args.temporal_dim, boundary_ratio=0.5,
        num_samples=args.num_samples, num_samples_per_bin=3, feat_dim=args.feat_dim,
        soft_nms_alpha=0.4, soft_nms_low_threshold=0.5, soft_nms_high_threshold=0.9,
        post_process_top_k=100, num_action_classes=NUM_CLASSES,
        cls_head=cls_head or args.cls_head, cls_dropout=0.0,
    )  # fmt: skip


def make_corpus(args: argparse.Namespace):
    """The features table, annotations and the training rows in memory."""
    total = args.videos + args.val_videos
    table, annotations = synthetic_features.synthetic_corpus(
        total, args.feat_dim, args.temporal_dim, NUM_CLASSES, seed=0, signal=args.signal,
        val_fraction=args.val_videos / total,
    )  # fmt: skip
    annos = parse_annotations(annotations)
    train, _ = data.split_annotations(annos, DataSection())
    class_of = {name: i for i, name in enumerate(annotations["classes"])}
    index = table.select(["video_id", data.DURATION])
    gt, _ = data.match_ground_truth(train, index, class_of)
    rows = data.collect_shard([data.join_ground_truth(table, gt)], args.feat_dim, args.temporal_dim)
    return table, annotations, rows


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_step(args: argparse.Namespace, rows: data.ShardArrays) -> dict:
    """The worker's step, eager and captured, from the same initial state and seeds."""
    device = torch.device(args.device)
    cfg = TrainConfig(model=model_cfg(args), batch_size=args.batch, optim=OptimSection())
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    steps = min(args.step_steps, len(rows) // args.batch)
    batches = data.epoch_batches(len(rows), args.batch, steps, cfg.seed, 0, 0)
    out = {"dtype": dtype, "batch": args.batch, "steps": steps}
    losses = {}
    for mode in STEP_MODES:
        mode_cfg = TrainConfig(model=model_cfg(args, "span"), batch_size=args.batch,
                               optim=OptimSection()) if mode == "graph_span_head" else cfg  # fmt: skip
        state = loop.new_train_state(mode_cfg.model, mode_cfg, str(device))
        graphs = mode != "eager" and step.graphs_apply(device, 1, state.model)
        if mode != "eager" and not graphs:
            out[mode] = {"skipped": "CUDA graphs do not apply here"}
            continue
        if mode == "graph_default_layout":  # the step before channels-last and fused Adam
            state.model.fast_bm_layer.channels_last = False
            state.model.x_2d_p.to(memory_format=torch.contiguous_format)
            state.optimizer = torch.optim.Adam(
                state.model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                capturable=True,
            )  # fmt: skip
        else:
            state.optimizer, state.scheduler = loop.build_optimizer(
                state.model, cfg.optim, capturable=device.type == "cuda"
            )
        GroupedConv1d.dense_on_cuda = mode != "graph_grouped_conv"
        set_forms(CANDIDATES.get(mode, DEFAULT_FORMS))
        shard = loop.to_device(rows, state.model, device)
        generator = torch.Generator(device=device)
        graphed = None
        start = time.perf_counter()
        if graphs:
            graphed = step.GraphedStep(
                state.model, state.optimizer, shard, args.batch, dtype,
                cfg.optim.grad_clip_max_norm, generator,
            )  # fmt: skip
        warmup_s = time.perf_counter() - start
        per_step = []
        for i, idx_B in enumerate(batches[: args.compare_steps]):  # losses step by step
            loop.seed_epoch(cfg.seed, i, 0, device, generator)
            per_step.append(loop_losses(state, shard, [idx_B], dtype, cfg, generator, graphed))
        if mode in ("eager", "graph"):
            losses[mode] = per_step
        loop.seed_epoch(cfg.seed, 1, 0, device, generator)
        sync(device)
        start = time.perf_counter()
        loop_losses(state, shard, batches, dtype, cfg, generator, graphed)
        seconds = time.perf_counter() - start
        out[mode] = {"samples_per_s": steps * args.batch / seconds, "seconds": seconds,
                     "warmup_seconds": warmup_s}  # fmt: skip
        if device.type == "cuda":
            out[mode]["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        GroupedConv1d.dense_on_cuda = True
        set_forms(DEFAULT_FORMS)
        del state, shard, graphed
    if len(losses) == 2:
        diffs = [abs(a[k] - b[k]) / max(abs(a[k]), 1e-12)
                 for a, b in zip(losses["eager"], losses["graph"], strict=True) for k in a]  # fmt: skip
        out["graph_vs_eager_max_rel_loss_diff"] = max(diffs)
        out["graph_vs_eager_losses"] = {k: [h["loss"] for h in v] for k, v in losses.items()}
        out["graph_speedup"] = out["graph"]["samples_per_s"] / out["eager"]["samples_per_s"]
    if "samples_per_s" in out.get("graph_span_head", {}):
        out["span_head_vs_pointwise"] = (
            out["graph_span_head"]["samples_per_s"] / out["graph"]["samples_per_s"]
        )
    if "samples_per_s" in out.get("graph_grouped_conv", {}):
        out["dense_grouped_conv_speedup"] = (
            out["graph"]["samples_per_s"] / out["graph_grouped_conv"]["samples_per_s"]
        )
    for mode in CANDIDATES:
        if "samples_per_s" in out.get(mode, {}):
            out[f"{mode}_speedup"] = out[mode]["samples_per_s"] / out["graph"]["samples_per_s"]
    if "samples_per_s" in out.get("graph_default_layout", {}):
        out["channels_last_fused_adam_speedup"] = (
            out["graph"]["samples_per_s"] / out["graph_default_layout"]["samples_per_s"]
        )
    return out


DEFAULT_FORMS = (
    BoundaryMatchingConv.fused_epilogue,
    BoundaryMatchingConv.batched_projection,
    GemvBiasConv2d.gemv_bias_on_cuda,
)
CANDIDATES = {  # (fused_epilogue, batched_projection, gemv_bias_on_cuda): forms not yet default
    "graph_fused_bm": (True, True, False),
    "graph_fused_bm_matmul_projection": (True, False, False),
    "graph_gemv_bias": (False, False, True),
    "graph_fused_bm_gemv_bias": (True, True, True),
}


def set_forms(forms: tuple[bool, bool, bool]) -> None:
    """The step's forms: (fused_epilogue, batched_projection, gemv_bias_on_cuda)."""
    fused, batched, gemv = forms
    BoundaryMatchingConv.fused_epilogue = fused
    BoundaryMatchingConv.batched_projection = batched
    GemvBiasConv2d.gemv_bias_on_cuda = gemv


STEP_MODES = (
    "eager",
    "graph",
    "graph_default_layout",
    "graph_grouped_conv",
    *CANDIDATES,
    "graph_span_head",
)


def loop_losses(state, shard, batches, dtype, cfg, generator, graphed) -> dict:
    return loop.train_epoch(
        state.model, state.model, state.optimizer, shard, batches, dtype=dtype,
        grad_clip=cfg.optim.grad_clip_max_norm, generator=generator, graphed=graphed,
    )  # fmt: skip


def bench_upstream(args: argparse.Namespace, rows: data.ShardArrays, precision: str) -> dict:
    """MMAction2's own training step (its BMN, loss mode) on the same rows and optimizer."""
    from mmaction.models.localizers import BMN
    from mmaction.structures import ActionDataSample
    from mmengine.structures import InstanceData

    torch.backends.cudnn.benchmark = False  # it made bf16 Conv3d stall for minutes on an H100
    torch.manual_seed(0)
    kwargs = {k: v for k, v in model_cfg(args).items()
              if k not in ("type", "num_action_classes", "cls_head", "cls_dropout")}  # fmt: skip
    model = BMN(**kwargs).to(args.device).train()
    optim = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if (
        precision == "bf16" and args.device.startswith("cuda")) else nullcontext  # fmt: skip
    batches = data.epoch_batches(len(rows), args.batch, args.upstream_steps + 2, 0, 0, 0)

    def one_step(idx_B: np.ndarray) -> None:
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
        one_step(idx_B)
    sync(torch.device(args.device))
    start = time.perf_counter()
    for idx_B in batches[2:]:
        one_step(idx_B)
    sync(torch.device(args.device))
    seconds = time.perf_counter() - start
    rate = args.upstream_steps * args.batch / seconds
    return {"precision": precision, "batch": args.batch, "steps": args.upstream_steps,
            "samples_per_s": rate, "epoch_seconds_estimate": args.videos / rate}  # fmt: skip


def write_features(tmp: str, table, annotations) -> tuple[str, str, float]:
    start = time.perf_counter()
    features = os.path.join(tmp, "feats")
    anno_uri = synthetic_features.write_table(features, table, annotations, rows_per_file=1024)
    return features, anno_uri, time.perf_counter() - start


def job_options(args: argparse.Namespace) -> list[str]:
    use_gpu = args.device.startswith("cuda")
    options = [f"epochs={args.epochs}", f"batch_size={args.batch}", "scaling.num_workers=1",
               f"scaling.use_gpu={use_gpu}", "scaling.cpus_per_worker=2",
               "checkpoint.num_to_keep=1", f"model.cls_head={args.cls_head}",
               "model.cls_dropout=0.0"]  # fmt: skip
    if not use_gpu:
        options.append("dtype=float32")
    for key in ("feat_dim", "temporal_dim", "num_samples"):
        options.append(f"model.{key}={getattr(args, key)}")
    return options


def bench_job(args: argparse.Namespace, root: Path, features: str, anno_uri: str, out: str) -> dict:
    """``python -m jobs.train`` from checkout ``root``, timed from start to exit."""
    cmd = [sys.executable, "-m", "jobs.train", "--config", str(root / CONFIG), "--features",
           features, "--annotations", anno_uri, "--output", out, "--num-workers", "1",
           *(["--use-gpu"] if args.device.startswith("cuda") else []),
           "--cfg-options", *job_options(args)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                      if p and Path(p).resolve() != ROOT]])}  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    wall, ended_at = time.perf_counter() - start, time.time()
    if proc.returncode != 0:
        return {"returncode": proc.returncode, "wall_seconds": wall,
                "stderr_tail": proc.stderr[-4000:]}  # fmt: skip
    summary = json.loads(proc.stdout[proc.stdout.index('{\n  "output_uri"') :])
    history = json.loads(Path(out, "history.json").read_text())
    train_s = sum(h["train_seconds"] for h in history)
    val_s = sum(h.get("val_seconds", 0.0) for h in history)
    # validation runs beside the next epoch's training: what the loop waited for is its cost
    wait_s = sum(h.get("val_wait_seconds", h.get("val_seconds", 0.0)) for h in history)
    timings = dict(summary.get("timings", {}))
    finished_at = timings.pop("finished_at_unix", None)
    last = history[-1] if history else {}
    split = {"train_seconds": train_s, "val_wait_seconds": wait_s,
             "val_seconds_beside_training": val_s,
             **{f"{k}_beside_training": sum(h.get(k, 0.0) for h in history[:-1])
                for k in BESIDE},
             **{f"last_epoch_{k}": last[k] for k in LAST_VAL if k in last}, **timings}  # fmt: skip
    if finished_at is not None:  # from the summary's print to the process's end
        split["time_exit_s"] = ended_at - finished_at
    accounted = train_s + wait_s + sum(v for k, v in split.items() if k in ACCOUNTED)
    split["other_seconds"] = wall - accounted
    return {
        "command": " ".join(cmd[1:]), "returncode": 0, "job_wall_seconds": wall,
        "epochs": len(history), "videos": args.videos, "val_videos": args.val_videos,
        "split": split,
        "train_samples_per_s": [h["samples_per_s"] for h in history],
        "final_metrics": {k: v for k, v in (summary.get("metrics") or {}).items()
                          if isinstance(v, (int, float))},
        "ray_train_worker_group_log": worker_group_log(since=ended_at - wall),
        "ray_start_s": ray_start_timeline(since=ended_at - wall),
    }  # fmt: skip


BESIDE = ("val_predict_seconds", "val_evaluate_seconds")
"""The parts of each validation that ran beside the next epoch's training (all but the last
epoch's): the proposals on the device, then their evaluation on the host."""
LAST_VAL = ("val_wait_seconds", "val_seconds", "val_predict_seconds", "val_evaluate_seconds")
"""The last epoch's validation (nothing trains beside it: the job waits for all of it)."""


def worker_group_log(since: float, ray_temp: str = "/tmp/ray") -> list[str]:
    """Ray Train's own timings of the worker group's start (its controller's debug log, ray
    2.60: lines "[Worker Group Initialization] ... in N s"), of the sessions written since."""
    lines = []
    logs = Path(ray_temp).glob("session_*/logs/train/ray-train-sys-controller-*.log")
    for path in sorted(p for p in logs if p.stat().st_mtime >= since):
        for line in path.read_text(errors="replace").splitlines():
            if "Initialization]" not in line:
                continue
            try:  # JSON records
                record = json.loads(line)
                line = f"{record.get('asctime', '')} {record.get('message', '')}"
            except ValueError:
                pass
            lines.append(" ".join(line.split())[:300])
    return lines[-40:]


RAY_START_EVENTS = (
    ("gcs_server", "gcs_server.out", ""),
    ("dashboard_head", "dashboard.log", ""),
    ("dashboard_head_ready", "dashboard.log", "Usage reporting"),
    ("raylet", "raylet.out", ""),
    ("raylet_object_manager", "raylet.out", "ObjectManager server started"),
    ("raylet_agents_spawned", "raylet.out", "Monitor agent process"),
    ("runtime_env_agent", "runtime_env_agent.log", ""),
    ("dashboard_agent", "dashboard_agent.log", ""),
    ("raylet_agent_connected", "raylet.out", "Initializing exporter"),
    ("raylet_ready", "raylet.out", "Raylet consists of"),
    ("first_worker_process", "raylet.out", "Started worker process"),
)
"""Ray's start, from its session logs (ray 2.60): (event, file, first line containing)."""


def ray_start_timeline(since: float, ray_temp: str = "/tmp/ray") -> dict[str, float]:
    """Seconds from the job's start to each of :data:`RAY_START_EVENTS`, read from the
    timestamps of the newest Ray session's logs started since ``since`` (the embedded Ray's
    start is part of ``time_ray_init_s``; this says which part)."""
    sessions = [p for p in Path(ray_temp).glob("session_2*") if p.stat().st_mtime >= since]
    if not sessions:
        return {}
    logs = max(sessions, key=lambda p: p.stat().st_mtime) / "logs"
    out = {}
    for event, name, needle in RAY_START_EVENTS:
        try:
            lines = (logs / name).read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if needle in line:
                stamp = _log_time(line)
                if stamp is not None:
                    out[event] = round(stamp - since, 3)
                    break
    return out


def _log_time(line: str) -> float | None:
    """The Unix time of a Ray log line (``[2026-12-07 09:42:31,470 I ...`` or
    ``2026-12-07 10:06:43,344\tINFO ...``: local time)."""
    text = line.lstrip("[")[:23]
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


def git_commit() -> str | None:
    """The checkout's commit (None outside git), with ``+dirty`` for uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def previous_run(path: Path) -> dict:
    """An earlier results file's job figures (wall, split, rates, metrics) and its step rates."""
    old = json.loads(path.read_text())
    job = old.get("job", {})
    keep = ("job_wall_seconds", "epochs", "videos", "split", "train_samples_per_s",
            "final_metrics")  # fmt: skip
    out = {k: old[k] for k in ("date", "device", "commit", "code_note") if k in old}
    out["job"] = {k: job[k] for k in keep if k in job}
    step = old.get("step", {})
    out["step_samples_per_s"] = {m: step[m]["samples_per_s"] for m in STEP_MODES
                                 if isinstance(step.get(m), dict) and "samples_per_s" in step[m]}  # fmt: skip
    return out


# phases of the job's own split that follow one another (the rest: Ray Train's set-up of the
# run before the workers are asked to start, its teardown, the worker's report waits)
ACCOUNTED = ("time_to_main_s", "time_config_s", "time_ray_init_s", "time_prepare_s",
             "time_worker_start_s", "time_rows_and_imports_s", "time_model_build_s",
             "time_ingest_s", "time_graph_warmup_s", "time_snapshots_s", "time_final_task_s",
             "time_report_s", "time_after_fit_s", "time_exit_s")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="JSON file to write")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--videos", type=int, default=10_000, help="training videos")
    parser.add_argument("--val-videos", type=int, default=1_000)
    parser.add_argument("--feat-dim", type=int, default=400)
    parser.add_argument("--temporal-dim", type=int, default=100)
    parser.add_argument("--num-samples", type=int, default=32)
    parser.add_argument("--cls-head", default="pointwise", help="the action head trained")
    parser.add_argument("--signal", type=float, default=3.0,
                        help="synthetic features' segment signal (class signal: half of it)")  # fmt: skip
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=9, help="of the job")
    parser.add_argument("--step-steps", type=int, default=150, help="timed steps per mode")
    parser.add_argument("--compare-steps", type=int, default=5, help="eager vs graph losses")
    parser.add_argument("--upstream-steps", type=int, default=10)
    parser.add_argument("--job-root", action="append", default=[], type=Path,
                        help="also run this checkout's job (e.g. the code before a change)")  # fmt: skip
    parser.add_argument("--skip-step", action="store_true")
    parser.add_argument("--skip-job", action="store_true",
                        help="the step and MMAction2's only (no features written, no job)")  # fmt: skip
    parser.add_argument("--commit", help="the code's commit (default: git's HEAD, which a "
                        "copied working tree may carry stale)")  # fmt: skip
    parser.add_argument("--previous", type=Path,
                        help="an earlier results file: its job figures are kept as previous_run")  # fmt: skip
    args = parser.parse_args(argv)
    start = time.perf_counter()
    table, annotations, rows = make_corpus(args)
    device = torch.device(args.device)
    report = {
        "benchmark": "train",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if device.type == "cuda"
        else platform.processor() or "cpu",
        "python": platform.python_version(), "torch": torch.__version__,
        "packages": runtime.package_versions(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "corpus_seconds": time.perf_counter() - start,
    }  # fmt: skip
    report["args"]["job_root"] = [str(p) for p in args.job_root]
    report["args"]["previous"] = str(args.previous) if args.previous else None
    report["commit"] = args.commit or git_commit()
    if args.previous:
        report["previous_run"] = previous_run(args.previous)

    def save() -> None:  # after each part: a run cut short keeps what it measured
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=2))

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        if not args.skip_job:
            features, anno_uri, report["parquet_write_seconds"] = write_features(
                tmp, table, annotations
            )
            report["job"] = bench_job(args, ROOT, features, anno_uri, os.path.join(tmp, "run"))
            save()
        del table
        for i, root in enumerate([] if args.skip_job else args.job_root):
            run = os.path.join(tmp, f"run_{i}")
            others = report.setdefault("job_other_roots", {})
            key = str(root) if str(root) not in others else f"{root} (run {i + 1})"
            others[key] = bench_job(args, root.resolve(), features, anno_uri, run)
    report["upstream"] = [bench_upstream(args, rows, p) for p in ("fp32", "bf16")]
    save()
    if not args.skip_step:
        report["step"] = bench_step(args, rows)
    base = report["upstream"][0]["samples_per_s"]
    for mode in STEP_MODES:
        if "samples_per_s" in report.get("step", {}).get(mode, {}):
            report["step"][mode]["ratio_vs_upstream_fp32"] = (
                report["step"][mode]["samples_per_s"] / base
            )
    job = report.get("job", {})
    if "train_samples_per_s" in job:
        job["train_ratio_vs_upstream_fp32"] = float(np.mean(job["train_samples_per_s"])) / base
    save()
    print(json.dumps({k: report[k] for k in ("job", "step", "upstream") if k in report},
                     indent=1)[:6000])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
