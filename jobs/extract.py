"""Extract: a video corpus → features, labelled proposals and per-video errors in Parquet.

    python -m jobs.extract --config configs/extract/demo.py --input VIDEOS --output OUT \
        [--checkpoint best.pth] [--cfg-options extractor.num_actors=8 ...]

Runs embedded (a local Ray starts) or under ``ray job submit --working-dir . -- python -m
jobs.extract ...``. Exit codes: 0 every video is done (broken videos are rows in OUT/errors/);
1 the job failed (the recognizer or localizer failed, or more than ``max_failed_fraction`` of
the videos failed: what succeeded is committed); 2 a job-level error at start (bad config,
unreadable input, output conflict); 75 some videos are left for a later run (storage kept
failing, or another run that is still alive claims them): rerun the same command.
"""

from __future__ import annotations

import argparse
import logging
import sys

from core import config, runtime
from core.io import tables
from core.pipeline import driver
from core.pipeline.config import ExtractConfig

log = logging.getLogger("jobs.extract")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    config.add_config_args(parser)
    runtime.add_video_job_args(parser)
    parser.add_argument("--checkpoint", default=None, help="localizer checkpoint from jobs.train")
    parser.add_argument(
        "--retry-failed", action="store_true", help="process videos with error rows again"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def run(cfg: ExtractConfig, text: str, videos: list, run_id: str) -> driver.ExtractSummary:
        return driver.run_extract(
            cfg, text, videos, args.output, run_id,
            localizer_checkpoint=args.checkpoint, retry_failed=args.retry_failed,
        )  # fmt: skip

    return runtime.run_video_job(args, ExtractConfig, run, print_summary, exit_code)


def exit_code(s: driver.ExtractSummary, cfg: ExtractConfig) -> int:
    max_failed_fraction = cfg.max_failed_fraction
    if s.failed_fraction > max_failed_fraction:
        log.error("%d of %d videos failed (more than max_failed_fraction=%g)",
                  s.num_failed, s.num_ok + s.num_failed, max_failed_fraction)  # fmt: skip
        return 1
    if s.num_left:
        log.warning("%d videos are left for a later run: rerun the same command", s.num_left)
        return 75
    return 0


def print_summary(s: driver.ExtractSummary) -> None:
    rate = (s.num_ok + s.num_failed) / s.seconds if s.seconds else 0.0
    lines = [
        f"run {s.run_id}: {s.num_inputs} videos in input, {s.num_skipped} already done",
        f"  processed {s.num_ok + s.num_failed} in {s.seconds:.1f} s ({rate:.2f} videos/s): "
        f"{s.num_ok} ok ({s.num_damaged} damaged), {s.num_failed} failed, "
        f"{s.num_proposals} proposals, {s.num_left} left for a later run",
    ]
    if s.num_retried:
        lines.append(f"  retried {s.num_retried} videos that had failed before")
    if s.errors_by_stage:
        lines.append(
            "  errors by stage: " + ", ".join(f"{k}={v}" for k, v in s.errors_by_stage.items())
        )
    out = s.output_uri.rstrip("/")
    lines += [
        f"  features:  {out}/features/",
        f"  proposals: {out}/proposals/",
        f"  errors:    {out}/errors/",
        "  query: "
        + tables.duckdb_command(
            "SELECT label, count(*) AS n, round(avg(score), 3) AS score FROM read_parquet("
            f"'{out}/proposals/*.parquet') GROUP BY label"
        ),
    ]
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
