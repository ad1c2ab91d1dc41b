"""AVA frame-mAP@0.5: :func:`core.eval.ava.evaluate_detections` against MMAction2's ``ava_eval``.

    python -m benchmarks.detect_eval --detections 100000 --output benchmarks/results/detect_ava_eval_cpu.json

Both read the same AVA CSV files (ground truth with person ids, detections with scores, the
label map, an exclusions file) and compute the same numbers (checked here); the times are
wall-clock seconds of one call each, reading included. ``ava_eval`` runs as MMAction2 ships
it (a ``multiprocessing.Pool(32)`` for its per-frame matching).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pathlib
import platform
import tempfile
import time

import numpy as np

from core.eval import ava


def make_case(folder: pathlib.Path, num_detections: int, seed: int = 0) -> dict[str, str]:
    """AVA-like data: 80 classes (the v2.1 label map's 60 evaluated), ~2.5 people per frame,
    ~1.5 actions per person, about 25 detections per frame (jittered boxes, random labels)."""
    rng = np.random.default_rng(seed)
    labels = ava.read_label_map("configs/detect/ava_v2.1_actions.pbtxt")
    ids = np.asarray(sorted(labels))
    frames = max(1, num_detections // 25)
    gt, det = [], []
    for f in range(frames):
        vid, ts = f"video{f % 64:03d}", 902 + f // 64
        people = []
        for p in range(rng.integers(1, 5)):
            x1, y1 = rng.uniform(0, 0.6, 2)
            box = np.round([x1, y1, x1 + rng.uniform(0.1, 0.4), y1 + rng.uniform(0.1, 0.4)], 3)
            people.append(box)
            for a in rng.choice(ids, size=rng.integers(1, 3), replace=False):
                gt.append(f"{vid},{ts},{box[0]},{box[1]},{box[2]},{box[3]},{a},{p}")
        for _ in range(25):
            box = people[rng.integers(len(people))] + rng.normal(0, 0.03, 4)
            box = np.round(
                np.concatenate([np.minimum(box[:2], box[2:]), np.maximum(box[:2], box[2:])]), 3
            )
            a = int(rng.choice(ids))
            det.append(f"{vid},{ts},{box[0]},{box[1]},{box[2]},{box[3]},{a},{rng.uniform():.4f}")
    paths = {k: str(folder / f"{k}.csv") for k in ("gt", "det", "excl")}
    pathlib.Path(paths["gt"]).write_text("\n".join(gt) + "\n")
    pathlib.Path(paths["det"]).write_text("\n".join(det[:num_detections]) + "\n")
    pathlib.Path(paths["excl"]).write_text("video000,902\nvideo001,903\n")
    paths["labels"] = "configs/detect/ava_v2.1_actions.pbtxt"
    paths["num_gt"] = len(gt)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--detections", type=int, default=100_000)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    from mmaction.evaluation.functional import ava_utils

    with tempfile.TemporaryDirectory() as tmp:
        p = make_case(pathlib.Path(tmp), args.detections)
        t0 = time.perf_counter()
        ours = ava.evaluate_detections(p["det"], p["gt"], p["labels"], p["excl"])
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            ref = ava_utils.ava_eval(
                p["det"], "mAP", p["labels"], p["gt"], p["excl"], verbose=False
            )
        t_ref = time.perf_counter() - t0
    result = {
        "what": "AVA frame-mAP@0.5 from AVA CSVs (reading included), one call each",
        "num_detections": args.detections,
        "num_ground_truth": p["num_gt"],
        "num_frames": ours.num_frames,
        "ours_seconds": round(t_ours, 3),
        "mmaction2_ava_eval_seconds": round(t_ref, 3),
        "speedup": round(t_ref / t_ours, 1),
        "frame_mAP_ours": ours.frame_map,
        "frame_mAP_mmaction2": float(ref["overall"]),
        "abs_difference": abs(ours.frame_map - float(ref["overall"])),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "command": f"python -m benchmarks.detect_eval --detections {args.detections}",
    }
    text = json.dumps(result, indent=2)
    if args.output:
        pathlib.Path(args.output).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
