"""Detect: a video corpus → spatio-temporal action detections (persons and their AVA actions).

    python -m jobs.detect --config configs/detect/demo.py --input VIDEOS --output OUT \
        [--cfg-options detector.num_actors=4 render.max_videos=2 ...]

MMAction2's spatio-temporal demo as a batch job: a person detector on every keyframe, an
action model on the clip around it (:mod:`core.detect`). Writes ``OUT/detections/``,
``OUT/errors/`` (Parquet), ``OUT/renders/<video_id>.mp4`` for the videos ``render`` names.
Runs embedded (a local Ray starts) or under ``ray job submit --working-dir . -- python -m
jobs.detect ...``. Exit codes: 0 the run finished (broken videos are rows in OUT/errors/),
1 the run failed (what it committed stays), 2 a job-level failure at start (bad config,
unreadable input, output conflict).
"""

from __future__ import annotations

import argparse
import logging
import sys

from core import config, runtime
from core.detect import driver
from core.detect.config import DetectConfig
from core.eval.ava import AVAInputError
from core.io import tables

log = logging.getLogger("jobs.detect")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    config.add_config_args(parser)
    runtime.add_video_job_args(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def run(cfg: DetectConfig, text: str, videos: list, run_id: str) -> driver.DetectSummary:
        return driver.run_detect(cfg, text, videos, args.output, run_id)

    return runtime.run_video_job(
        args, DetectConfig, run, print_summary, input_errors=(AVAInputError,)
    )


def print_summary(s: driver.DetectSummary) -> None:
    out = s.output_uri.rstrip("/")
    lines = [
        f"run {s.run_id}: {s.num_inputs} videos in input, {s.num_skipped} already done",
        f"  processed {s.num_ok + s.num_failed} in {s.seconds:.1f} s: {s.num_ok} ok, "
        f"{s.num_failed} failed, {s.num_detections} detections, {s.num_rendered} rendered",
    ]
    if s.errors_by_stage:
        lines.append(
            "  errors by stage: " + ", ".join(f"{k}={v}" for k, v in s.errors_by_stage.items())
        )
    lines += [
        f"  detections: {out}/detections/",
        f"  errors:     {out}/errors/",
        f"  renders:    {out}/renders/",
        "  query: "
        + tables.duckdb_command(
            "SELECT action, count(*) AS n, round(avg(score), 3) AS score FROM read_parquet("
            f"'{out}/detections/*.parquet') GROUP BY action"
        ),
    ]
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
