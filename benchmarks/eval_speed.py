"""Times our AR@AN and detection mAP against MMAction2's on the same random inputs.

    .venv/bin/python -m benchmarks.eval_speed [--videos 5000] [--proposals 100]   # repo root

AR@AN: ``core.eval.proposals.average_recall_at_avg_proposals`` vs MMAction2's function of
that name (what ``ANetMetric`` runs), both from the same dicts, ``max_avg_proposals=100``.
Detection: ``core.eval.detection.activitynet_detection_map`` vs
``ActivityNetLocalization.evaluate()`` (its JSON loading not timed), on ``--det-videos``
videos. Also checks that the numbers agree. Writes ``results/eval_speed.json`` next to this
file and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

import core  # noqa: F401  (upstream shims before mmaction)
from core.eval.detection import activitynet_detection_map
from core.eval.proposals import average_recall_at_avg_proposals

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def random_ar_inputs(rng, num_videos, per_video, max_gt, dur=120.0):
    """Ground truth (N, 2) and exactly ``per_video`` proposals (M, 3) per video."""
    gt, props = {}, {}
    for i in range(num_videos):
        n = int(rng.integers(1, max_gt + 1))
        start = rng.uniform(0, 0.8 * dur, n)
        gt[f"v{i:05d}"] = np.stack([start, start + rng.uniform(2, 0.3 * dur, n)], 1)
        segments = np.sort(rng.uniform(0, dur, (per_video, 2)), axis=1)
        props[f"v{i:05d}"] = np.concatenate([segments, rng.random((per_video, 1))], 1)
    return gt, props


def random_detections(rng, num_videos, per_video, num_classes, dur=120.0):
    labels = [f"c{c}" for c in range(num_classes)]
    gt, det_video, det_label, det_segments = {}, [], [], []
    for i in range(num_videos):
        n = int(rng.integers(1, 4))
        start = rng.uniform(0, 0.8 * dur, n)
        segments = np.stack([start, start + rng.uniform(2, 0.3 * dur, n)], 1)
        names = [labels[c] for c in rng.integers(0, num_classes, n)]
        gt[f"v_{i:05d}"] = (segments, names)
        k = rng.integers(0, n, per_video)
        near = np.sort(segments[k] + rng.normal(0, 5, (per_video, 2)), axis=1)
        det_segments.append(near)
        det_video += [f"v_{i:05d}"] * per_video
        det_label += [
            names[j] if rng.random() < 0.7 else labels[rng.integers(num_classes)] for j in k
        ]
    scores = rng.random(len(det_video)).astype(np.float32).astype(np.float64)
    return gt, det_video, np.concatenate(det_segments), det_label, scores


def time_call(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, times


def bench_ar(args, mm):
    rng = np.random.default_rng(args.seed)
    gt, props = random_ar_inputs(rng, args.videos, args.proposals, args.max_gt)
    total = sum(len(p) for p in props.values())
    ours, times = time_call(lambda: average_recall_at_avg_proposals(gt, props), args.repeats)
    row = {
        "videos": args.videos,
        "proposals_per_video": args.proposals,
        "ground_truth": sum(len(g) for g in gt.values()),
        "ours_s_min": min(times),
        "ours_s_median": statistics.median(times),
        "ours_metrics": ours.metrics(),
    }
    if mm is not None:
        (recall, _, _, auc), mm_times = time_call(
            lambda: mm.average_recall_at_avg_proposals(gt, props, total, max_avg_proposals=100), 1
        )
        row.update(
            mmaction_s=mm_times[0],
            speedup=mm_times[0] / min(times),
            max_abs_recall_diff=float(np.abs(recall - ours.recall_TK).max()),
            auc_diff=float(abs(auc - ours.auc)),
        )
    return row


def bench_detection(args, mm):
    rng = np.random.default_rng(args.seed + 1)
    gt, video, segments, labels, scores = random_detections(
        rng, args.det_videos, args.proposals, args.classes
    )
    ours, times = time_call(
        lambda: activitynet_detection_map(gt, video, segments, labels, scores), args.repeats
    )
    row = {
        "videos": args.det_videos,
        "detections": len(video),
        "classes": args.classes,
        "ours_s_min": min(times),
        "ours_s_median": statistics.median(times),
        "ours_mAP": ours.average_map,
    }
    if mm is not None:
        with tempfile.TemporaryDirectory() as tmp:
            gt_json = {
                v: {
                    "duration_second": 120.0,
                    "annotations": [
                        {"segment": s.tolist(), "label": label}
                        for s, label in zip(seg, names, strict=True)
                    ],
                }
                for v, (seg, names) in gt.items()
            }
            results: dict = {}
            for v, s, label, score in zip(video, segments.tolist(), labels, scores, strict=True):
                results.setdefault(v[2:], []).append(
                    {"segment": s, "label": label, "score": float(score)}
                )
            with open(os.path.join(tmp, "gt.json"), "w") as f:
                json.dump(gt_json, f)
            with open(os.path.join(tmp, "pred.json"), "w") as f:
                json.dump({"results": results}, f)
            anet = mm.ActivityNetLocalization(
                os.path.join(tmp, "gt.json"), os.path.join(tmp, "pred.json")
            )
            (_, average_map), mm_times = time_call(anet.evaluate, 1)
        columns = [anet.activity_index[c] for c in ours.class_names]
        row.update(
            mmaction_s=mm_times[0],
            speedup=mm_times[0] / min(times),
            mmaction_mAP=float(average_map),
            max_abs_ap_diff=float(np.abs(anet.ap[:, columns] - ours.ap_TC).max()),
        )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=5000)
    parser.add_argument("--proposals", type=int, default=100, help="per video")
    parser.add_argument("--max-gt", type=int, default=3, help="ground truth per video, 1..max")
    parser.add_argument("--det-videos", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-mmaction", action="store_true")
    args = parser.parse_args()

    mm = None
    if not args.skip_mmaction:
        import mmaction.evaluation.functional as mm
    record = {
        "command": " ".join(["python -m benchmarks.eval_speed", *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
            "python": platform.python_version(),
            "numpy": np.__version__,
            "processor": platform.processor() or platform.machine(),
        },
        "ar_an": bench_ar(args, mm),
        "detection": bench_detection(args, mm),
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "eval_speed.json"), "w") as f:
        json.dump(record, f, indent=2)
    for name in ("ar_an", "detection"):
        row = record[name]
        line = f"{name:10s} ours {row['ours_s_min']:.3f} s (median {row['ours_s_median']:.3f})"
        if "mmaction_s" in row:
            line += f"   MMAction2 {row['mmaction_s']:.2f} s   speed-up {row['speedup']:.0f}x"
        print(line)
    print(json.dumps({k: record[k] for k in ("ar_an", "detection")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
