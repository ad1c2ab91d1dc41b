"""Import ActivityNet's csv_mean_100 BMN features (one ``v_<id>.csv`` per video) as features Parquet.

    python -m jobs.import_features --csv-dir URI --annotations anet_anno.json --output URI \
        [--batch-size 256] [--num-cpus N]

Writes OUTPUT/features/part-<batch>.parquet (the features table, the layout
jobs.extract writes and jobs.train reads) and OUTPUT/_runs/<run>/record.json. CSV rows are
positions, columns channels; rows store C × T. ``feature_span_s`` is MMAction2's corrected duration
(feature_frame / duration_frame × duration_second). Videos already imported into OUTPUT are
skipped, so a killed import is resumed by running it again. Runs embedded or under
``ray job submit``. Exit codes: 0 done, 2 unusable input.
"""

from __future__ import annotations

import argparse
import logging
import sys

from core import runtime, storage
from core.eval.annotations import AnnotationError, load_annotations
from core.features import csv_import
from core.io import commits, index, leases, runs

log = logging.getLogger("jobs.import_features")

MAX_IN_FLIGHT = 32


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csv-dir", required=True, help="folder or s3:// prefix of v_<id>.csv")
    parser.add_argument("--annotations", required=True, help="anet_anno JSON (or ActivityNet's)")
    parser.add_argument("--output", required=True, help="output URI")
    parser.add_argument("--batch-size", type=int, default=256, help="videos per Parquet file")
    parser.add_argument("--num-cpus", type=int, default=None, help="embedded Ray only")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, run_id: str) -> dict:
    """Imports every annotated CSV not yet in the output; returns the run record."""
    import ray

    annos = load_annotations(args.annotations)
    csv_uris = storage.list_files(args.csv_dir, (".csv",))
    if not csv_uris:
        raise FileNotFoundError(f"no .csv files under {args.csv_dir}")
    commits.recover(args.output)
    done = index.committed_video_ids(args.output)
    todo, facts, unannotated = csv_import.plan_import(csv_uris, annos, done)
    if unannotated:
        log.warning("%d CSVs have no annotation (no duration) and are skipped, e.g. %s",
                    len(unannotated), unannotated[:3])  # fmt: skip
    log.info("%d CSVs: %d to import, %d already imported", len(csv_uris), len(todo), len(done))
    task = ray.remote(csv_import.import_batch)
    pending, rows = [], 0
    done_log = index.IndexWriter(args.output, run_id)

    def finish(results: list[dict]) -> int:
        for r in results:
            done_log.add(r["committed"], [r["batch_id"]] * len(r["committed"]),
                      [True] * len(r["committed"]))  # fmt: skip
        return sum(len(r["committed"]) for r in results)

    with leases.RunLease(args.output, run_id):
        for start in range(0, len(todo), args.batch_size):
            items = todo[start : start + args.batch_size]
            batch_facts = {vid: facts[vid] for vid, _ in items}
            pending.append(task.remote(items, batch_facts, args.output, run_id, args.csv_dir))
            if len(pending) >= MAX_IN_FLIGHT:
                ready, pending = ray.wait(pending, num_returns=1)
                rows += finish(ray.get(ready))
        rows += finish(ray.get(pending))
        done_log.close()
    record = {
        "run_id": run_id, "csv_dir": args.csv_dir, "annotations": args.annotations,
        "num_csv": len(csv_uris), "imported": rows, "skipped_done": len(done),
        "skipped_unannotated": len(unannotated), "versions": runtime.package_versions(),
    }  # fmt: skip
    storage.write_json(storage.join(args.output, runs.RUNS_DIR, run_id, "record.json"), record)
    return record


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runtime.setup_logging()
    runtime.init_ray(num_cpus=args.num_cpus)
    try:
        record = run(args, runtime.new_run_id())
    except (FileNotFoundError, AnnotationError, csv_import.CsvFeatureError) as e:
        log.error("%s", e)
        return 2
    sys.stdout.write(
        f"imported {record['imported']} videos into {args.output.rstrip('/')}/features/ "
        f"({record['skipped_done']} already there, {record['skipped_unannotated']} without "
        "annotation)\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
