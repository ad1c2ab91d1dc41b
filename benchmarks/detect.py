"""Spatio-temporal detection throughput: ``jobs.detect`` against MMAction2's demo loop.

    python -m benchmarks.detect --output benchmarks/results/detect_h200.json \
        [--num-videos 48 --baseline-videos 3 --seconds 20 --width 1280 --height 720 --fps 30]

In one run, on the same generated videos (``core.corpus.make_corpus``, H.264) and the same
model weights:

* **baseline**: MMAction2's ``demo/demo_spatiotemporal_det.py`` approach, rebuilt from its
  APIs as ``tests/integration/test_detect_parity.py`` does: ``mmaction.utils.frame_extract``
  (OpenCV decode, every frame written as a JPEG), ``mmcv.imresize`` of every frame,
  ``mmaction.apis.detection_inference`` one keyframe per call, the action model one
  timestamp per call (``model(input, [ActionDataSample], mode='predict')``) and the demo's
  per-score threshold loop; the models are built once (the demo builds them once per video);
  timed per stage on the first ``--baseline-videos`` videos;
* **ours**: ``python -m jobs.detect`` as a user runs it (a subprocess, embedded Ray, Ray Data
  actor pools) on all ``--num-videos`` videos; the CLI's wall time (Ray start-up included)
  and the run's own time (its run record).

Models: the production config (``configs/detect/slowonly_r101_ava21.py``: Faster R-CNN R50-FPN
at 1333 x 800, SlowOnly-R101 8 x 8 at short side 256) with seeded random weights, saved as
checkpoints that both sides load; no trained weights can be downloaded on the benchmark
machines. So that every keyframe has persons, as on AVA, the detector's person logit gets a
bias (``--person-bias``: its score about 0.93, above the demo's 0.9) and the detector keeps at
most ``--max-persons`` boxes per keyframe (its ``test_cfg.rcnn.max_per_img``, both sides).

Where ``mmcv`` is ``mmcv-lite`` with ``benchmarks/mmcv_ext.py`` as its ``_ext`` (the GPU
machine), the shim's torchvision kernels are first checked against its plain-torch ones
(which ``tests/unit/test_mmcv_ext_shim.py`` checks against the compiled mmcv.ops); the results
file says which route ran. GPU utilisation is sampled with ``nvidia-smi`` during our run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import torch

import core  # noqa: F401  (MMAction2 compatibility)
from core import config
from core.detect.config import DetectConfig

REPO = pathlib.Path(__file__).resolve().parents[1]
PROD_CONFIG = "configs/detect/slowonly_r101_ava21.py"


def mmcv_route() -> str:
    """``compiled`` (the full mmcv) or ``shim`` (``mmcv-lite`` + ``benchmarks/mmcv_ext.py``)."""
    import mmcv._ext as ext

    return "shim" if hasattr(ext, "roi_align_reference") else "compiled"


def check_shim(device: str, seed: int = 0) -> dict:
    """The shim's kernels in use (torchvision where it imports) against its plain-torch ones,
    on random boxes and features."""
    import mmcv._ext as ext

    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(2000, 2, generator=g) * 600
    boxes = torch.cat([xy, xy + torch.rand(2000, 2, generator=g) * 200 + 1], 1).to(device)
    scores = torch.rand(2000, generator=g).to(device)
    keep = ext.nms(boxes, scores, 0.5, 0)
    keep_ref = ext.nms_reference(boxes, scores, 0.5, 0)
    feat = torch.randn(2, 64, 50, 76, generator=g).to(device)
    k = torch.randint(0, 2, (300, 1), generator=g).float()
    rois = torch.cat([k, torch.rand(300, 2, generator=g) * 500,
                      torch.rand(300, 2, generator=g) * 300 + 500], 1).to(device)  # fmt: skip
    rois[:, 3:] = torch.maximum(rois[:, 3:], rois[:, 1:3] + 1)
    out = torch.zeros(300, 64, 7, 7, device=device)
    ext.roi_align_forward(feat, rois, out, out.new_zeros(0), out.new_zeros(0), aligned_height=7,
                          aligned_width=7, spatial_scale=1 / 16, sampling_ratio=0, pool_mode=1,
                          aligned=True)  # fmt: skip
    ref = ext.roi_align_reference(feat, rois, 7, 7, 1 / 16, 0, True)
    return {
        "torchvision_kernels": ext._tv_ops is not None,
        "nms_equal": bool(torch.equal(keep.cpu(), keep_ref.cpu())),
        "nms_kept": int(len(keep)),
        "roi_align_max_abs_diff": float((out - ref).abs().max()),
    }


def make_videos(folder: str, args) -> list[str]:
    from core.corpus import make_corpus

    make_corpus(
        folder, args.num_videos, 10, seed=0, min_duration=args.seconds, max_duration=args.seconds,
        resolutions=((args.width, args.height),), fps_choices=(float(args.fps),),
        workers=args.workers,
    )  # fmt: skip
    return sorted(str(p) for p in pathlib.Path(folder, "videos").glob("*.mp4"))


def options(args, det_ckpt: str, act_ckpt: str) -> dict:
    """The config overrides both sides run with."""
    return {
        "detector.checkpoint": det_ckpt,
        "action.checkpoint": act_ckpt,
        "detector.model.test_cfg.rcnn.max_per_img": args.max_persons,
        "action.channel_order": "bgr",  # the demo feeds OpenCV's BGR frames
        "render.max_videos": 0,
        **{k: _literal(v) for k, v in (kv.split("=", 1) for kv in args.cfg_options)},
    }


def _literal(text: str):
    """A ``--cfg-options`` value as the job's CLI reads it: a Python literal, else a string."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def make_checkpoints(cfg: DetectConfig, folder: str, person_bias: float) -> tuple[str, str]:
    """Seeded random weights of both models; the detector's person logit raised."""
    from core.detect.models import PersonDetector, build_action_model
    from core.io.checkpoint import save_checkpoint

    det = PersonDetector(cfg.detector, "cpu", cfg.seed).model
    state = det.state_dict()
    state["roi_head.bbox_head.fc_cls.bias"][cfg.detector.category_id] += person_bias
    det_path, act_path = os.path.join(folder, "detector.pth"), os.path.join(folder, "action.pth")
    save_checkpoint({"state_dict": state}, det_path)
    save_checkpoint({"state_dict": build_action_model(cfg.action, cfg.seed).state_dict()}, act_path)
    return det_path, act_path


# ----------------------------------------------------------------------------- the baseline


class DemoLoop:
    """MMAction2's spatio-temporal demo, one video at a time, models built once."""

    def __init__(self, cfg: DetectConfig, device: str) -> None:
        from mmdet.apis import init_detector
        from mmengine.runner import load_checkpoint

        from core.detect.models import build_action_model, detector_config

        self.cfg, self.device = cfg, device
        self.det_model = init_detector(detector_config(cfg.detector), cfg.detector.checkpoint,
                                       palette="random", device=device)  # fmt: skip
        self.model = build_action_model(cfg.action, cfg.seed)
        load_checkpoint(self.model, cfg.action.checkpoint, map_location="cpu")
        self.model.to(device).eval()
        from core.eval.ava import read_label_map

        self.label_map = read_label_map(cfg.action.label_map)

    def run(self, video: str, tmp: str) -> dict:
        import mmcv
        from mmaction.apis import detection_inference
        from mmaction.structures import ActionDataSample
        from mmaction.utils import frame_extract
        from mmengine.structures import InstanceData

        s, cfg, dev = self.cfg.sampling, self.cfg, self.device
        sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
        t = {"start": time.perf_counter()}
        frame_paths, original_frames = frame_extract(video, out_dir=tmp)
        t["frame_extract"] = time.perf_counter()
        num_frame = len(frame_paths)
        h, w, _ = original_frames[0].shape
        new_w, new_h = mmcv.rescale_size((w, h), (s.short_side, np.inf))
        frames = [mmcv.imresize(img, (new_w, new_h)) for img in original_frames]
        w_ratio, h_ratio = new_w / w, new_h / h
        window_size = s.clip_len * s.frame_interval
        timestamps = np.arange(window_size // 2, num_frame + 1 - window_size // 2,
                               s.predict_stepsize)  # fmt: skip
        center_frames = [frame_paths[ind - 1] for ind in timestamps]
        t["resize"] = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            human_detections, _ = detection_inference(
                self.det_model, None, center_frames, cfg.detector.score_thr,
                cfg.detector.category_id, dev,
            )  # fmt: skip
        for i in range(len(human_detections)):
            det = human_detections[i]
            det[:, 0:4:2] *= w_ratio
            det[:, 1:4:2] *= h_ratio
            human_detections[i] = torch.from_numpy(det[:, :4]).to(dev)
        sync()
        t["detection"] = time.perf_counter()
        pre = cfg.action.model["data_preprocessor"]
        img_norm_cfg = dict(mean=np.array(pre["mean"]), std=np.array(pre["std"]), to_rgb=False)
        rows = persons = 0
        for timestamp, proposal in zip(timestamps, human_detections, strict=True):
            if proposal.shape[0] == 0:
                continue
            start_frame = timestamp - (s.clip_len // 2 - 1) * s.frame_interval
            frame_inds = list(start_frame + np.arange(0, window_size, s.frame_interval) - 1)
            imgs = [frames[ind].astype(np.float32) for ind in frame_inds]
            _ = [mmcv.imnormalize_(img, **img_norm_cfg) for img in imgs]
            input_tensor = torch.from_numpy(np.stack(imgs).transpose((3, 0, 1, 2))[np.newaxis])
            datasample = ActionDataSample()
            datasample.proposals = InstanceData(bboxes=proposal)
            datasample.set_metainfo(dict(img_shape=(new_h, new_w)))
            with torch.no_grad():
                result = self.model(input_tensor.to(dev), [datasample], mode="predict")
                scores = result[0].pred_instances.scores
                for i in range(scores.shape[1]):  # the demo's loop, as it is
                    if i not in self.label_map:
                        continue
                    for j in range(proposal.shape[0]):
                        if scores[j, i] > cfg.action.score_thr:
                            rows += 1
            persons += int(proposal.shape[0])
        sync()
        t["action"] = time.perf_counter()
        stages = ("frame_extract", "resize", "detection", "action")
        prev, seconds = t["start"], {}
        for k in stages:
            seconds[k] = t[k] - prev
            prev = t[k]
        return {"keyframes": len(timestamps), "frames": num_frame, "persons": persons,
                "rows": rows, "seconds": seconds}  # fmt: skip


# ----------------------------------------------------------------------------- ours


class GpuSampler(threading.Thread):
    """``nvidia-smi`` utilisation and memory every 0.25 s while running."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                 "--format=csv,noheader,nounits"]  # fmt: skip
        while not self.stop.is_set():
            try:
                out = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout
                util, mem = out.strip().splitlines()[0].split(",")
                self.samples.append((float(util), float(mem)))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass
            self.stop.wait(0.25)

    def summary(self) -> dict:
        if not self.samples:
            return {}
        u = np.asarray(self.samples)
        return {"util_pct_mean": round(float(u[:, 0].mean()), 1),
                "util_pct_p90": float(np.percentile(u[:, 0], 90)),
                "memory_mib_max": float(u[:, 1].max()), "samples": len(u)}  # fmt: skip


def run_job(config_path: str, manifest: str, out: str, opts: dict, num_cpus: int | None) -> dict:
    cmd = [sys.executable, "-m", "jobs.detect", "--config", config_path, "--input", manifest,
           "--output", out, "--cfg-options", *[f"{k}={v}" for k, v in opts.items()]]  # fmt: skip
    if num_cpus:
        cmd += ["--num-cpus", str(num_cpus)]
    sampler = GpuSampler()
    sampler.start()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    sampler.stop.set()
    if proc.returncode != 0:
        raise RuntimeError(f"jobs.detect failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    (record,) = [
        json.loads(p.read_text()) for p in pathlib.Path(out, "_runs").glob("*/record.json")
    ]
    return {"wall_seconds": wall, "run_seconds": record["seconds"], "record": record,
            "gpu": sampler.summary(), "stdout": proc.stdout[-2000:]}  # fmt: skip


def count_keyframes(out: str) -> dict:
    import pyarrow.parquet as pq

    dets = pq.read_table(os.path.join(out, "detections")).select(
        ["video_id", "frame_index", "person_index"]
    ).to_pandas()  # fmt: skip
    return {"keyframes_with_detections": int(dets[["video_id", "frame_index"]].drop_duplicates().shape[0]),
            "rows": len(dets)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--output", default=None)
    p.add_argument("--config", default=PROD_CONFIG)
    p.add_argument("--num-videos", type=int, default=48)
    p.add_argument("--baseline-videos", type=int, default=3)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--max-persons", type=int, default=5)
    p.add_argument("--person-bias", type=float, default=7.0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--num-cpus", type=int, default=None, help="our job's embedded Ray")
    p.add_argument("--cfg-options", nargs="*", default=[], help="more overrides, both sides")
    p.add_argument("--work-dir", default=None)
    args = p.parse_args()
    from core.runtime import package_versions, setup_logging

    setup_logging()
    result: dict = {"what": "spatio-temporal detection, keyframes/s: jobs.detect (Ray Data) vs "
                    "MMAction2's demo loop, same videos, same weights"}  # fmt: skip
    result["mmcv_ops"] = mmcv_route()
    if result["mmcv_ops"] == "shim":
        result["shim_check"] = check_shim(args.device)
    work = args.work_dir or tempfile.mkdtemp(prefix="detect_bench_")
    t0 = time.perf_counter()
    videos = make_videos(os.path.join(work, "corpus"), args)
    result["corpus_seconds"] = round(time.perf_counter() - t0, 1)
    base_cfg, _ = config.load(args.config, DetectConfig)
    det_ckpt, act_ckpt = make_checkpoints(base_cfg, work, args.person_bias)
    opts = options(args, det_ckpt, act_ckpt)
    cfg, _ = config.load(args.config, DetectConfig, dict(opts))

    demo = DemoLoop(cfg, args.device)
    demo.run(videos[0], os.path.join(work, "warmup"))  # CUDA kernels, cuDNN choices
    base = [demo.run(v, os.path.join(work, "frames")) for v in videos[: args.baseline_videos]]
    b_key = sum(b["keyframes"] for b in base)
    b_sec = sum(sum(b["seconds"].values()) for b in base)
    stage = {k: round(sum(b["seconds"][k] for b in base), 3) for k in base[0]["seconds"]}
    del demo
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()

    # placements: what the config asks for (GPU shares) unless overridden by --cfg-options
    job_opts = dict(opts)
    if not args.device.startswith("cuda"):
        job_opts.update({"detector.num_gpus": 0, "action.num_gpus": 0})
    ours = run_job(args.config, os.path.join(work, "corpus", "manifest.csv"),
                   os.path.join(work, "out"), job_opts, args.num_cpus)  # fmt: skip
    rec = ours["record"]
    if rec["num_failed"] or rec["num_ok"] != len(videos):
        raise RuntimeError(f"our run did not process every video: {rec}")
    o_key = sum(keyframes_of(v, cfg) for v in videos)
    video_s = args.seconds * len(videos)
    result.update(
        device=torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        cpu_cores=os.cpu_count(),
        packages=package_versions(("torch", "torchvision", "ray", "mmengine", "mmcv", "mmcv-lite",
                                   "mmdet", "mmaction2", "av", "opencv-python-headless")),
        config=args.config,
        options={k: v for k, v in opts.items() if not k.endswith("checkpoint")},
        videos={"count": len(videos), "seconds_each": args.seconds, "size": [args.width, args.height],
                "fps": args.fps, "codec": "h264"},
        baseline={
            "videos": len(base), "keyframes": b_key, "seconds": round(b_sec, 3),
            "keyframes_per_s": round(b_key / b_sec, 2),
            "video_hours_per_hour": round(args.seconds * len(base) / b_sec, 3),
            "seconds_by_stage": stage, "persons": sum(b["persons"] for b in base),
            "rows": sum(b["rows"] for b in base),
        },
        ours={
            "videos": len(videos), "keyframes": o_key,
            "wall_seconds": round(ours["wall_seconds"], 2), "run_seconds": rec["seconds"],
            "keyframes_per_s_wall": round(o_key / ours["wall_seconds"], 2),
            "keyframes_per_s_run": round(o_key / rec["seconds"], 2),
            "video_hours_per_hour_wall": round(video_s / ours["wall_seconds"], 2),
            "video_hours_per_hour_run": round(video_s / rec["seconds"], 2),
            "detections": rec["num_detections"], "gpu": ours["gpu"],
            **count_keyframes(os.path.join(work, "out")),
        },
    )  # fmt: skip
    result["speedup_wall"] = round(result["ours"]["keyframes_per_s_wall"] / (b_key / b_sec), 1)
    result["speedup_run"] = round(result["ours"]["keyframes_per_s_run"] / (b_key / b_sec), 1)
    result["command"] = "python -m benchmarks.detect " + " ".join(sys.argv[1:])
    text = json.dumps(result, indent=2)
    if args.output:
        pathlib.Path(args.output).write_text(text + "\n")
    print(text)


def keyframes_of(video: str, cfg: DetectConfig) -> int:
    """The demo's keyframe count of a video (``np.arange(window // 2, n + 1 - window // 2,
    step)``), which ``jobs.detect`` reproduces (tests/integration/test_detect_parity.py)."""
    import cv2

    cap = cv2.VideoCapture(video)
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    s = cfg.sampling
    return len(np.arange(s.window // 2, n + 1 - s.window // 2, s.predict_stepsize))


if __name__ == "__main__":
    main()
