"""Spatio-temporal detection throughput: ``jobs.detect`` against MMAction2's demo loop.

    python -m benchmarks.detect --output benchmarks/results/detect_h200.json \
        [--distinct 16 --copies 24 --seconds 12 --baseline-videos 3 --job-limit 400]

In one run, on the same generated videos (``core.corpus.make_corpus``, 720p H.264 30 fps) and
the same model weights:

* **corpus**: ``--distinct`` videos, each listed ``--copies`` times under its own video id in
  the job's manifest, so that the job runs long enough for a steady state without encoding
  hours of video first (every copy is decoded in full, like any other video);
* **baseline**: MMAction2's ``demo/demo_spatiotemporal_det.py`` approach, rebuilt from its
  APIs as ``tests/integration/test_detect_parity.py`` does: ``mmaction.utils.frame_extract``
  (OpenCV decode, every frame written as a JPEG), ``mmcv.imresize`` of every frame,
  ``mmaction.apis.detection_inference`` one keyframe per call, the action model one
  timestamp per call (``model(input, [ActionDataSample], mode='predict')``) and the demo's
  per-score threshold loop, one video at a time in one process; the models are built once
  (the demo builds them once per video, which is not timed here); timed per stage on the
  first ``--baseline-videos`` distinct videos after one untimed warm-up video;
* **bounds**: ``--decode-workers`` processes that only decode keyframes and clips as the
  job's decoding tasks do (no model); each model alone on the GPU as an actor calls it, on
  real keyframes and clips, at the config's batch size and larger, in float32 (the config's)
  and under float16 and bfloat16 autocast (not what the job runs: how much precision would
  give, with how far its outputs are from float32's: boxes matched by overlap, scores);
* **detector profile**: the parts of one detector call on random 720p frames, one CPU thread
  (its input made on the device, backbone and FPN, RPN, RoI head), with mmdet's own CPU test
  pipeline and pre-processor on the same batch for comparison;
* **ours**: ``python -m jobs.detect`` as a user runs it (a subprocess: the CLI, embedded Ray,
  Ray Data actor pools) on all ``distinct x copies`` videos: the CLI's wall time, start-up
  (to the first committed batch) apart from the steady rate (keyframes committed between 10%
  and 90% of the videos, from the job's ``committed:`` log lines), GPU utilisation sampled
  with ``nvidia-smi`` every 0.25 s. ``--job-limit`` stops a job that runs longer (the steady
  window then ends at its last commit, and the results say so);
* **variants** (``--variant LABEL OPTIONS``): the job again with other options, in the time
  ``--deadline`` leaves; ``--profile-detector`` runs only the detector profile.

Models: the production config (``configs/detect/slowonly_r101_ava21.py``: Faster R-CNN R50-FPN
at 1333 x 800, SlowOnly-R101 8 x 8 at short side 256) with seeded random weights, saved as
checkpoints that both sides load; no trained weights can be downloaded on the benchmark
machines. So that every keyframe has persons, as on AVA, the detector's person logit gets a
bias (``--person-bias``: its score about 0.93, above the demo's 0.9) and the detector keeps at
most ``--max-persons`` boxes per keyframe (its ``test_cfg.rcnn.max_per_img``, both sides).

Where ``mmcv`` is ``mmcv-lite`` with ``benchmarks/mmcv_ext.py`` as its ``_ext`` (the GPU
machine), the shim's torchvision kernels are first checked against its plain-torch ones
(which ``tests/unit/test_mmcv_ext_shim.py`` checks against the compiled mmcv.ops); the results
file says which route ran. Both sides run the same mmcv, so the same kernels. Results are
written to ``--output`` after every part, so that a run stopped early keeps what it measured.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import dataclasses
import functools
import io
import json
import multiprocessing as mp
import os
import pathlib
import re
import signal
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
STEADY = (0.1, 0.9)
"""The steady window: from this share of the videos committed to that one."""
COMMITTED = re.compile(r"committed: (\d+)/(\d+) videos, (\d+) keyframes")


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


def make_videos(folder: str, args) -> tuple[list[str], str]:
    """The distinct videos and a manifest listing each ``args.copies`` times."""
    from core.corpus import make_corpus

    make_corpus(
        folder, args.distinct, 10, seed=0, min_duration=args.seconds, max_duration=args.seconds,
        resolutions=((args.width, args.height),), fps_choices=(float(args.fps),),
        workers=args.workers,
    )  # fmt: skip
    paths = sorted(str(p) for p in pathlib.Path(folder, "videos").glob("*.mp4"))
    rows = ["video_id,uri"]
    for k in range(args.copies):  # copy k of every video, then copy k + 1
        rows += [f"{pathlib.Path(p).stem}-c{k:03d},{p}" for p in paths]
    manifest = os.path.join(folder, "job_manifest.csv")
    pathlib.Path(manifest).write_text("\n".join(rows) + "\n")
    return paths, manifest


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

    random = dataclasses.replace(cfg.detector, checkpoint=None)  # the config's is a URL
    det = PersonDetector(random, "cpu", cfg.seed).model
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


# ----------------------------------------------------------------------------- bounds

_SAMPLING = None


def _start_decoder(sampling, detector_short_side) -> None:
    global _SAMPLING
    import core.detect.frames  # noqa: F401  (imported off the clock)

    _SAMPLING = (sampling, detector_short_side)


def _ready(_: int) -> bool:
    time.sleep(0.5)  # so that every worker starts one
    return True


def _decode_only(path: str) -> int:
    """One video's keyframe blocks as ``stages.decode_videos`` makes them; its keyframes."""
    from core.detect.frames import iter_keyframes

    keyframes = 0
    for block in iter_keyframes(path, *_SAMPLING, None):
        np.stack(block.keyframes)
        keyframes += len(block.frame_index_K)
    return keyframes


def decode_bound(paths: list[str], cfg: DetectConfig, workers: int) -> dict:
    """Keyframes/s of ``workers`` processes that only decode (no model, no Ray)."""
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_start_decoder,
                                initargs=(cfg.sampling, cfg.detector.short_side)) as pool:  # fmt: skip
        list(pool.map(_ready, range(workers)))  # started and imported off the clock
        for p in paths:  # the job reads the files from the page cache too
            pathlib.Path(p).read_bytes()
        t0 = time.perf_counter()
        keyframes = sum(pool.map(_decode_only, paths))
        seconds = time.perf_counter() - t0
    return {"workers": workers, "videos": len(paths), "keyframes": keyframes,
            "seconds": round(seconds, 3), "keyframes_per_s": round(keyframes / seconds, 1)}  # fmt: skip


def _timed(fn, device: str, min_seconds: float) -> tuple[float, int]:
    """Seconds per call of ``fn`` (two untimed calls first), over at least ``min_seconds``."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(2):
        fn()
    sync()
    t0, calls = time.perf_counter(), 0
    while calls < 2 or time.perf_counter() - t0 < min_seconds:
        fn()
        calls += 1
    sync()
    return (time.perf_counter() - t0) / calls, calls


def _max_diff(pairs) -> float:
    return float(max((np.abs(a - b).max() for a, b in pairs if a.size), default=0.0))


def _rates(
    model,
    section,
    method: str,
    inputs: tuple[list, ...],
    dtypes: list[str],
    batches: list[int],
    names: tuple[str, str],
    device: str,
    seconds: float,
    out: dict,
) -> dict[str, list]:
    """Times ``model.<method>`` on the first b items of each of ``inputs``, ``model.section``
    at each dtype and batch size b, into ``out`` as ``<name>_<dtype>_batch<b>_<unit>_per_s``
    (or ``..._error`` for a precision the model cannot run); returns each dtype's outputs at
    its last batch that ran."""
    name, unit = names
    outputs: dict[str, list] = {}
    for dtype in dtypes:
        for b in batches:
            model.section = dataclasses.replace(section, batch_size=b, dtype=dtype)
            call = functools.partial(getattr(model, method), *(x[:b] for x in inputs))
            try:
                outputs[dtype] = call()
                per_call, _ = _timed(call, device, seconds)
                out[f"{name}_{dtype}_batch{b}_{unit}_per_s"] = round(b / per_call, 1)
            except Exception as e:  # noqa: BLE001  (a precision the model cannot run: recorded)
                out[f"{name}_{dtype}_batch{b}_error"] = f"{type(e).__name__}: {e}"[:300]
    return outputs


def _iou_NM(a_N4: np.ndarray, b_M4: np.ndarray) -> np.ndarray:
    lt = np.maximum(a_N4[:, None, :2], b_M4[None, :, :2])
    rb = np.minimum(a_N4[:, None, 2:], b_M4[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a, area_b = (a_N4[:, 2:] - a_N4[:, :2]).prod(-1), (b_M4[:, 2:] - b_M4[:, :2]).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match_boxes(ref: list, other: list, min_iou: float = 0.5) -> dict:
    """Each reference box (float32's) against the box of ``other`` (a half precision's) on
    the same image that overlaps it most: how many find one with IoU above ``min_iou``, and
    for those the largest corner and score differences. Matching by overlap, not by rank:
    near-tied scores (random weights) reorder between precisions."""
    total = matched = 0
    corner, score, ious = [0.0], [0.0], []
    for (a_N4, sa_N), (b_M4, sb_M) in zip(ref, other, strict=True):
        total += len(a_N4)
        if not len(a_N4) or not len(b_M4):
            continue
        iou = _iou_NM(a_N4, b_M4)
        j = iou.argmax(1)
        best = iou[np.arange(len(a_N4)), j]
        ok = best > min_iou
        matched += int(ok.sum())
        ious += best[ok].tolist()
        corner.append(float(np.abs(a_N4[ok] - b_M4[j[ok]]).max(initial=0.0)))
        score.append(float(np.abs(sa_N[ok] - sb_M[j[ok]]).max(initial=0.0)))
    return {"boxes": total, "matched_iou_above_0_5": matched,
            "matched_iou_min": round(min(ious), 4) if ious else None,
            "matched_iou_median": round(float(np.median(ious)), 4) if ious else None,
            "matched_corner_max_abs_diff_px": round(max(corner), 3),
            "matched_scores_max_abs_diff": round(max(score), 5)}  # fmt: skip


def model_bounds(
    cfg: DetectConfig, path: str, device: str, batches: list[int], seconds: float
) -> dict:
    """Each model alone, as its actor calls it, on real keyframes and clips of ``path``, at
    each ``dtype`` (its autocast; float32 only on the CPU), with the largest difference of
    its outputs from float32's at the largest batch."""
    from core.detect.frames import iter_keyframes
    from core.detect.models import ActionModel, PersonDetector
    from core.detect.stages import to_clip_pixels

    blocks = list(iter_keyframes(path, cfg.sampling, cfg.detector.short_side, None))
    keyframes = [k for b in blocks for k in b.keyframes]
    clips = [c for b in blocks for c in b.clips_KThw3]
    n = max(batches)
    keyframes = [keyframes[i % len(keyframes)] for i in range(n)]
    clips = [clips[i % len(clips)] for i in range(n)]
    dtypes = ["float32", "float16", "bfloat16"] if device.startswith("cuda") else ["float32"]
    out: dict = {"input": {"keyframe": list(keyframes[0].shape), "clip": list(clips[0].shape)}}

    det = PersonDetector(cfg.detector, device, cfg.seed, cfg.checkpoint.allow_pickle)
    found = _rates(det, cfg.detector, "detect", (keyframes,), dtypes, batches,
                   ("detector", "images"), device, seconds, out)  # fmt: skip
    out["persons_per_keyframe"] = float(np.mean([len(s) for _, s in found["float32"]]))
    for dtype in dtypes[1:]:
        if len(found.get(dtype, [])) == n:
            out[f"detector_{dtype}_vs_float32"] = match_boxes(found["float32"], found[dtype])
    del det
    boxes = [to_clip_pixels(b_N4, k.shape[:2], c.shape[1:3])  # as stages.PersonBoxes does
             for (b_N4, _), k, c in zip(found["float32"], keyframes, clips, strict=True)]  # fmt: skip
    act = ActionModel(cfg.action, device, cfg.seed, cfg.checkpoint.allow_pickle)
    scores = _rates(act, cfg.action, "scores", (clips, boxes), dtypes, batches,
                    ("action", "clips"), device, seconds, out)  # fmt: skip
    for dtype in dtypes[1:]:
        if len(scores.get(dtype, [])) == n:
            pairs = zip(scores["float32"], scores[dtype], strict=True)
            out[f"action_{dtype}_vs_float32_scores_max_abs_diff"] = _max_diff(pairs)
    del act
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def profile_detector(cfg: DetectConfig, device: str, batch: int, threads: list[int]) -> dict:
    """Where ``PersonDetector.detect``'s time goes on one batch of 720p frames, milliseconds
    per image, at each CPU thread count (a Ray actor with ``num_cpus=1`` runs torch with one
    thread): its input made on the device (``core.detect.preprocess``, upload included), then
    ``predict``'s parts; and, for comparison, what mmdet's own test pipeline (per image, on
    the CPU) and ``DetDataPreprocessor`` take for the same batch."""
    from mmcv.transforms import Compose

    from core.detect.models import PersonDetector, detector_config

    det = PersonDetector(cfg.detector, device, cfg.seed, cfg.checkpoint.allow_pickle)
    model = det.model
    pipeline = detector_config(cfg.detector).test_dataloader.dataset.pipeline
    pipeline[0] = dict(type="mmdet.LoadImageFromNDArray")
    mmdet_pipeline = Compose(pipeline)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (720, 1280, 3), np.uint8) for _ in range(batch)]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    out: dict = {"batch": batch, "image": [720, 1280, 3]}
    for n in threads:
        torch.set_num_threads(n)
        ms: dict[str, float] = {}
        for _ in range(3):  # the last of 3 (kernels and allocator warm)
            with torch.no_grad():
                t = time.perf_counter()
                packed = [mmdet_pipeline(dict(img=np.ascontiguousarray(f[..., ::-1]), img_id=i))
                          for i, f in enumerate(frames)]  # fmt: skip
                t_pipe = time.perf_counter()
                model.data_preprocessor(
                    {"inputs": [p["inputs"] for p in packed],
                     "data_samples": [p["data_samples"] for p in packed]}, False)  # fmt: skip
                sync()
                t_pre = time.perf_counter()
                batch_in = det.preprocess(np.stack(frames), device, list(range(batch)))
                samples = batch_in.data_samples()
                sync()
                t_ours = time.perf_counter()
                x = model.extract_feat(batch_in.inputs_B3HpWp)
                sync()
                t_feat = time.perf_counter()
                rpn = model.rpn_head.predict(x, samples, rescale=False)
                sync()
                t_rpn = time.perf_counter()
                model.roi_head.predict(x, rpn, samples, rescale=True)
                sync()
                t_roi = time.perf_counter()
                det.detect(frames)
                sync()
                t_all = time.perf_counter()
            ms = {"mmdet_pipeline_cpu": t_pipe - t, "mmdet_data_preprocessor": t_pre - t_pipe,
                  "preprocess_on_device": t_ours - t_pre, "backbone_fpn": t_feat - t_ours,
                  "rpn_predict": t_rpn - t_feat, "roi_head_predict": t_roi - t_rpn,
                  "detect_whole": t_all - t_roi}  # fmt: skip
        out[f"threads_{n}_ms_per_image"] = {k: round(v * 1000 / batch, 2) for k, v in ms.items()}
    torch.set_num_threads(os.cpu_count() or 1)
    return out


# ----------------------------------------------------------------------------- ours


class GpuSampler(threading.Thread):
    """``nvidia-smi`` utilisation and memory every 0.25 s, with the time since ``t0``."""

    def __init__(self, t0: float) -> None:
        super().__init__(daemon=True)
        self.t0 = t0
        self.samples: list[tuple[float, float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                 "--format=csv,noheader,nounits"]  # fmt: skip
        while not self.stop.is_set():
            try:
                out = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout
                util, mem = out.strip().splitlines()[0].split(",")
                self.samples.append((time.perf_counter() - self.t0, float(util), float(mem)))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return  # no nvidia-smi (CPU)
            self.stop.wait(0.25)

    def summary(self, window: tuple[float, float] | None) -> dict:
        if not self.samples:
            return {}
        u = np.asarray(self.samples)
        out = {"util_pct_mean": round(float(u[:, 1].mean()), 1), "memory_mib_max": float(u[:, 2].max()),
               "samples": len(u)}  # fmt: skip
        if window:
            w = u[(u[:, 0] >= window[0]) & (u[:, 0] <= window[1])]
            if len(w):
                out["steady_util_pct_mean"] = round(float(w[:, 1].mean()), 1)
                out["steady_util_pct_p10_p50_p90"] = [
                    float(np.percentile(w[:, 1], q)) for q in (10, 50, 90)
                ]
        return out


def run_job(config_path: str, manifest: str, out: str, opts: dict, num_cpus: int | None,
            limit_s: float) -> dict:  # fmt: skip
    """``python -m jobs.detect`` as a user runs it; its ``committed:`` lines as they come."""
    cmd = [sys.executable, "-m", "jobs.detect", "--config", config_path, "--input", manifest,
           "--output", out, "--cfg-options", *[f"{k}={v}" for k, v in opts.items()]]  # fmt: skip
    if num_cpus:
        cmd += ["--num-cpus", str(num_cpus)]
    env = dict(os.environ, RAY_DATA_DISABLE_PROGRESS_BARS="1", PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    sampler = GpuSampler(t0)
    sampler.start()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    points: list[tuple[float, int, int]] = [(0.0, 0, 0)]
    marks: dict[str, float] = {}
    tail: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            now = time.perf_counter() - t0
            tail.append(line.rstrip())
            del tail[:-300]
            if m := COMMITTED.search(line):
                points.append((now, int(m[1]), int(m[3])))
            elif "starting an embedded local Ray" in line:
                marks.setdefault("ray_start_s", now)
            elif "to process" in line:
                marks.setdefault("run_start_s", now)  # Ray up, inputs listed, output checked

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stopped = False
    try:
        proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        stopped = True
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wall = time.perf_counter() - t0
    reader.join(timeout=10)
    sampler.stop.set()
    if proc.returncode != 0 and not stopped:
        raise RuntimeError(f"jobs.detect failed ({proc.returncode}):\n" + "\n".join(tail[-60:]))
    records = [json.loads(p.read_text()) for p in pathlib.Path(out, "_runs").glob("*/record.json")]
    return {"wall_seconds": wall, "exit_code": proc.returncode, "stopped_at_limit": stopped,
            "points": points, "marks": marks, "record": records[0] if records else None,
            "sampler": sampler, "log_tail": tail[-40:]}  # fmt: skip


def steady_state(points: list[tuple[float, int, int]], total: int, stopped: bool) -> dict | None:
    """Keyframes and videos committed per second between the commits at 10% and 90% of the
    videos (the last commit, if the job was stopped)."""
    t, v, k = (np.asarray(c, dtype=float) for c in zip(*points, strict=True))
    lo = np.nonzero(v >= STEADY[0] * total)[0]
    hi = np.nonzero(v <= STEADY[1] * total)[0] if not stopped else np.arange(len(v))
    if not len(lo) or not len(hi) or hi[-1] <= lo[0]:
        return None
    a, b = lo[0], hi[-1]
    dt = t[b] - t[a]
    return {"from_s": round(float(t[a]), 2), "to_s": round(float(t[b]), 2), "seconds": round(float(dt), 2),
            "videos": int(v[b] - v[a]), "keyframes": int(k[b] - k[a]),
            "keyframes_per_s": round(float((k[b] - k[a]) / dt), 2),
            "videos_per_s": round(float((v[b] - v[a]) / dt), 3)}  # fmt: skip


def ray_data_stats() -> list[str]:
    """Ray Data's per-operator lines from the job's session logs, where it wrote them."""
    lines = []
    for p in sorted(pathlib.Path("/tmp/ray/session_latest/logs/ray-data").glob("*.log")):
        with contextlib.suppress(OSError):
            lines += [x for x in p.read_text(errors="replace").splitlines()
                      if re.search(r"Operator|wall time|UDF time|Dataset .* execution finished", x)]  # fmt: skip
    return lines[-80:]


def count_detections(out: str) -> dict:
    import pyarrow.parquet as pq

    dets = pq.read_table(
        os.path.join(out, "detections"), columns=["video_id", "frame_index", "person_index"]
    ).to_pandas()
    persons = dets[["video_id", "frame_index", "person_index"]].drop_duplicates()
    return {"rows": len(dets), "keyframes_with_detections": int(persons[["video_id", "frame_index"]].drop_duplicates().shape[0]),
            "persons": len(persons)}  # fmt: skip


# ----------------------------------------------------------------------------- the run


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output", default=None)
    p.add_argument("--config", default=PROD_CONFIG)
    p.add_argument("--distinct", type=int, default=16)
    p.add_argument("--copies", type=int, default=24)
    p.add_argument("--baseline-videos", type=int, default=3)
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="corpus rendering")
    p.add_argument("--decode-workers", type=int, default=None,
                   help="decode bound processes; default: the CPUs the job's actors leave")  # fmt: skip
    p.add_argument("--bound-batches", type=int, nargs="*", default=None,
                   help="model bound batch sizes; default: the config's and 4 times it")  # fmt: skip
    p.add_argument("--bound-seconds", type=float, default=3.0)
    p.add_argument("--max-persons", type=int, default=5)
    p.add_argument("--person-bias", type=float, default=7.0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--num-cpus", type=int, default=None, help="our job's embedded Ray")
    p.add_argument(
        "--job-limit", type=float, default=400.0, help="seconds; then the job is stopped"
    )
    p.add_argument("--cfg-options", nargs="*", default=[], help="more overrides, both sides")
    p.add_argument(
        "--variant",
        nargs=2,
        action="append",
        metavar=("LABEL", "OPTIONS"),
        help="after the bounds, the job again with these space-separated options",
    )
    p.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="seconds from the start: a variant that would not fit is skipped",
    )
    p.add_argument("--work-dir", default=None)
    p.add_argument("--commit", default=None, help="the code's commit (default: git's HEAD)")
    p.add_argument(
        "--profile-detector",
        action="store_true",
        help="only profile the detector's parts on random 720p frames (no corpus, no job)",
    )
    return p.parse_args()


def main() -> None:
    args = parse_args()
    from core.runtime import package_versions, setup_logging

    setup_logging()
    cuda = args.device.startswith("cuda")
    result: dict = {
        "what": "spatio-temporal detection, keyframes/s: jobs.detect (Ray Data) vs MMAction2's "
                "demo loop, same videos, same weights, same mmcv kernels",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m benchmarks.detect " + " ".join(sys.argv[1:]),
        "commit": args.commit or _git_head(),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu", "cpu_cores": os.cpu_count(),
        "packages": package_versions(("torch", "torchvision", "ray", "mmengine", "mmcv", "mmcv-lite",
                                      "mmdet", "mmaction2", "av", "opencv-python-headless", "numpy")),
        "weights": "random (seeded), saved as checkpoints both sides load; the detector's person "
                   f"logit +{args.person_bias}; no trained checkpoint can be downloaded there",
    }  # fmt: skip
    save = _saver(args.output, result)
    result["mmcv_ops"] = mmcv_route()
    if result["mmcv_ops"] == "shim":
        result["shim_check"] = check_shim(args.device)
    work = args.work_dir or tempfile.mkdtemp(prefix="detect_bench_")
    if args.profile_detector:
        base_cfg, _ = config.load(args.config, DetectConfig)
        det_ckpt, act_ckpt = make_checkpoints(base_cfg, work, args.person_bias)
        cfg, _ = config.load(args.config, DetectConfig, options(args, det_ckpt, act_ckpt))
        result["detector_profile"] = profile_detector(
            cfg, args.device, cfg.detector.batch_size, [1, 16]
        )
        save()
        print(json.dumps(result["detector_profile"], indent=1))
        return
    t0 = time.perf_counter()
    videos, manifest = make_videos(os.path.join(work, "corpus"), args)
    base_cfg, _ = config.load(args.config, DetectConfig)
    det_ckpt, act_ckpt = make_checkpoints(base_cfg, work, args.person_bias)
    opts = options(args, det_ckpt, act_ckpt)
    cfg, _ = config.load(args.config, DetectConfig, dict(opts))
    per_video = keyframes_of(videos[0], cfg)
    result.update(
        config=args.config,
        options={k: v for k, v in opts.items() if not k.endswith("checkpoint")},
        corpus={"distinct_videos": len(videos), "copies": args.copies, "videos": len(videos) * args.copies,
                "seconds_each": args.seconds, "size": [args.width, args.height], "fps": args.fps,
                "codec": "h264", "keyframes_each": per_video, "seconds_to_make": round(time.perf_counter() - t0, 1)},
        layout={"detector": _layout(cfg.detector), "action": _layout(cfg.action),
                "decode_task_cpus": cfg.sampling.num_cpus, "keyframes_per_block": cfg.sampling.keyframes_per_block,
                "write_batch_size": cfg.write_batch_size},
    )  # fmt: skip
    save()

    # the baseline: the demo's loop, one video at a time
    demo = DemoLoop(cfg, args.device)
    demo.run(videos[args.baseline_videos % len(videos)], os.path.join(work, "warmup"))  # kernels
    base = [demo.run(v, os.path.join(work, "frames")) for v in videos[: args.baseline_videos]]
    del demo
    if cuda:
        torch.cuda.empty_cache()
    b_key = sum(b["keyframes"] for b in base)
    b_sec = sum(sum(b["seconds"].values()) for b in base)
    result["baseline"] = {
        "videos": len(base), "keyframes": b_key, "seconds": round(b_sec, 3),
        "keyframes_per_s": round(b_key / b_sec, 3),
        "video_hours_per_hour": round(args.seconds * len(base) / b_sec, 3),
        "seconds_by_stage": {k: round(sum(b["seconds"][k] for b in base), 3) for k in base[0]["seconds"]},
        "persons": sum(b["persons"] for b in base), "rows": sum(b["rows"] for b in base),
        "note": "measured on these videos and extrapolated per keyframe to the job's corpus "
                "(the demo's work per keyframe does not depend on how many videos follow)",
    }  # fmt: skip
    save()

    # ours: the CLI, the config as it is
    b_rate = b_key / b_sec
    job_opts = dict(opts)
    if not cuda:
        job_opts.update({"detector.num_gpus": 0, "action.num_gpus": 0})
    try:
        ours = measure_job(args, manifest, os.path.join(work, "out"), job_opts, args.job_limit)
    except RuntimeError as e:  # the bounds still tell where the time goes
        result["ours_error"] = str(e)[-4000:]
        save()
        print(result["ours_error"], flush=True)
        run_bounds(args, cfg, videos, result, save)
        raise SystemExit(1) from e
    result["ours"] = ours
    result["speedup_steady"] = _ratio(ours["steady"], b_rate)
    result["speedup_wall"] = round(ours["keyframes_per_s_wall"] / b_rate, 1)
    save()
    print(json.dumps({k: result[k] for k in ("baseline", "speedup_steady", "speedup_wall")}))
    print(
        json.dumps({k: ours[k] for k in ("steady", "start_up", "wall_seconds", "gpu")}), flush=True
    )
    run_bounds(args, cfg, videos, result, save)

    # variants: the same job with other options, in the time left
    for label, text in args.variant or []:
        left = args.deadline - (time.perf_counter() - t0) - 20 if args.deadline else args.job_limit
        if left < 60:
            result.setdefault("variants_skipped", []).append(f"{label}: {left:.0f} s left")
            save()
            continue
        extra = {k: _literal(v) for k, v in (kv.split("=", 1) for kv in text.split())}
        try:
            var = measure_job(args, manifest, os.path.join(work, f"out-{label}"),
                              job_opts | extra, min(left, args.job_limit))  # fmt: skip
        except Exception as e:  # noqa: BLE001  (recorded with the rest)
            var = {"error": f"{type(e).__name__}: {e}"[-4000:]}
        var["cfg_options"] = extra
        var["speedup_steady"] = _ratio(var.get("steady"), b_rate)
        result.setdefault("variants", {})[label] = var
        save()
        print(
            json.dumps({label: {k: var.get(k) for k in ("steady", "start_up", "speedup_steady")}})
        )
    summary = {k: v for k, v in result.items() if k not in ("ours", "variants")}
    print(json.dumps(summary | {"ours": _brief(result["ours"])}, indent=2))


def _ratio(steady: dict | None, base_rate: float) -> float | None:
    return round(steady["keyframes_per_s"] / base_rate, 1) if steady else None


def _brief(job: dict) -> dict:
    return {k: v for k, v in job.items() if k not in ("commits", "log_tail", "ray_data_stats")}


def measure_job(args, manifest: str, out: str, opts: dict, limit_s: float) -> dict:
    """One run of the job: start-up, steady rate, GPU use, what it wrote."""
    job = run_job(args.config, manifest, out, opts, args.num_cpus, limit_s)
    rec, total = job["record"], args.distinct * args.copies
    points = job["points"]
    steady = steady_state(points, total, job["stopped_at_limit"])
    window = (steady["from_s"], steady["to_s"]) if steady else None
    done_videos, done_kf = points[-1][1], points[-1][2]
    ours = {
        "videos": total, "videos_committed": done_videos, "keyframes_committed": done_kf,
        "exit_code": job["exit_code"], "stopped_at_limit": job["stopped_at_limit"],
        "wall_seconds": round(job["wall_seconds"], 2), "run_seconds": rec and rec.get("seconds"),
        "start_up": {**{k: round(v, 2) for k, v in job["marks"].items()},
                     "first_commit_s": round(points[1][0], 2) if len(points) > 1 else None},
        "steady": steady,
        "keyframes_per_s_wall": round(done_kf / job["wall_seconds"], 2),
        "video_hours_per_hour_wall": round(done_videos * args.seconds / job["wall_seconds"], 2),
        "gpu": job["sampler"].summary(window),
        "commits": [[round(t, 2), v, k] for t, v, k in points],
        "ray_data_stats": ray_data_stats(),
        "log_tail": job["log_tail"],
    }  # fmt: skip
    if steady:
        ours["steady"]["video_hours_per_hour"] = round(steady["videos_per_s"] * args.seconds, 2)
    with contextlib.suppress(Exception):
        ours["detections"] = count_detections(out)
    return ours


def run_bounds(args, cfg: DetectConfig, videos: list[str], result: dict, save) -> None:
    """Decoding alone, then each model alone."""
    workers = args.decode_workers or max(1, (os.cpu_count() or 2) - _actor_cpus(cfg))
    result["decode_bound"] = decode_bound(videos, cfg, workers)
    save()
    print(json.dumps({"decode_bound": result["decode_bound"]}), flush=True)
    batches = args.bound_batches or [cfg.detector.batch_size, 4 * cfg.detector.batch_size]
    try:
        result["model_bounds"] = model_bounds(
            cfg, videos[0], args.device, sorted(set(batches)), args.bound_seconds
        )
    except Exception as e:  # noqa: BLE001  (recorded; the variants still run)
        result["model_bounds_error"] = f"{type(e).__name__}: {e}"[:2000]
    save()
    print(json.dumps({"model_bounds": result.get("model_bounds")}), flush=True)
    try:
        result["detector_profile"] = profile_detector(
            cfg, args.device, cfg.detector.batch_size, [1]
        )
    except Exception as e:  # noqa: BLE001  (recorded; the variants still run)
        result["detector_profile_error"] = f"{type(e).__name__}: {e}"[:2000]
    save()


def _layout(section) -> dict:
    return {k: getattr(section, k) for k in ("batch_size", "num_actors", "num_gpus", "num_cpus")}


def _actor_cpus(cfg: DetectConfig) -> int:
    return int(
        round(
            cfg.detector.num_actors * cfg.detector.num_cpus
            + cfg.action.num_actors * cfg.action.num_cpus
        )
    )


def _saver(path: str | None, result: dict):
    def save() -> None:
        if path:
            pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
            pathlib.Path(path).write_text(json.dumps(result, indent=2, default=str) + "\n")

    return save


def _git_head() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
        return out.stdout.strip() or None
    return None


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
