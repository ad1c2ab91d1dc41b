"""Evaluates proposals against ground truth: AR@AN, AUC and (with labels) detection mAP; or
spatio-temporal detections against AVA ground truth: frame-level mAP@0.5.

    python -m jobs.evaluate --proposals URI --annotations URI --output URI [--subset validation]
    python -m jobs.evaluate --detections URI --annotations AVA_CSV --label-map PBTXT \
        [--exclusions CSV] --output URI

Reads the proposals Parquet dataset (hive-partitioned, ``**/*.parquet``), accepts official
ActivityNet v1.3 or MMAction2 ``anet_anno`` annotations, writes ``OUTPUT/metrics.json``,
``OUTPUT/ar_an.png`` and, for labelled proposals, ``per_class_ap.png``, ``confusion.png`` and
``timelines.png`` (see :mod:`core.eval.report`). Exit codes: 0 done, 2 missing or unusable input. Needs no Ray: it reads
one table and runs vectorised numpy.
"""

from __future__ import annotations

import argparse
import logging
import sys

from core import storage
from core.eval.annotations import AnnotationError, load_annotations_and_classes
from core.eval.ava import add_detection_args, run_detections
from core.eval.metrics import EvaluationInputError, evaluate_full, format_summary, read_proposals
from core.eval.report import METRICS, write_report

logger = logging.getLogger("jobs.evaluate")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jobs.evaluate", description=__doc__)
    parser.add_argument("--proposals", default=None, help="proposals Parquet dataset URI")
    add_detection_args(parser)
    parser.add_argument("--annotations", required=True, help="ground truth: JSON, or AVA CSV")
    parser.add_argument("--output", required=True, help="output folder URI")
    parser.add_argument("--subset", default=None, help="e.g. validation (default: all videos)")
    parser.add_argument("--run-id", default=None, help="evaluate only this run's proposals")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.detections:
        return run_detections(args)
    if not args.proposals:
        logger.error("give --proposals (temporal proposals) or --detections (AVA boxes)")
        return 2
    try:
        annotations, classes = load_annotations_and_classes(args.annotations)
        table = read_proposals(args.proposals, run_id=args.run_id)
        evaluation = evaluate_full(table, annotations, subset=args.subset, classes=classes)
    except (FileNotFoundError, AnnotationError, EvaluationInputError) as error:
        logger.error("%s", error)
        return 2
    write_report(evaluation, args.output)
    print(format_summary(evaluation.metrics))
    logger.info("wrote %s", storage.join(args.output, METRICS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
