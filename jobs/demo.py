"""The demo behind ``make demo``: the closed loop on a laptop, with no cluster and no downloads.

    python -m jobs.demo --output demo_out [--num-videos 48] [--num-classes 4]

1. ``jobs.make_corpus``: a synthetic annotated corpus (training and validation videos);
2. ``jobs.extract`` with ``configs/extract/demo.py`` and the untrained localizer: features of
   every video, and proposals that mean nothing yet (the baseline);
3. ``jobs.train`` with ``configs/train/demo.py`` on those features: ``best.pth``;
4. ``jobs.extract`` again with ``--checkpoint best.pth``: labelled proposals from a model that
   learned;
5. ``jobs.evaluate`` of both on the validation videos, and a table of the two.

Each step is the real job's ``main()`` in this process (one embedded Ray serves them all).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import pyarrow.compute as pc

from core.eval.metrics import read_proposals
from core.io import tables
from jobs import evaluate, extract, make_corpus, train

log = logging.getLogger("jobs.demo")

EXTRACT_CONFIG = "configs/extract/demo.py"
TRAIN_CONFIG = "configs/train/demo.py"
METRICS = ("AR@1", "AR@5", "AR@10", "AR@100", "AUC", "mAP", "mAP@0.5", "mAP@0.75")


def run(step: str, fn, argv: list[str]) -> None:
    log.info("=== %s: %s", step, " ".join(argv))
    code = fn(argv)
    if code != 0:
        raise SystemExit(f"demo step '{step}' failed with exit code {code}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="demo_out")
    parser.add_argument("--num-videos", type=int, default=48)
    parser.add_argument("--num-classes", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = args.output.rstrip("/")
    corpus, untrained, model, trained = (
        f"{out}/{n}" for n in ("corpus", "untrained", "model", "trained")
    )
    classes = f"model.num_action_classes={args.num_classes}"

    run("make_corpus", make_corpus.main, [
        "--output", corpus, "--num-videos", str(args.num_videos), "--num-classes",
        str(args.num_classes), "--seed", str(args.seed), "--min-duration", "6",
        "--max-duration", "16", "--resolutions", "160x120", "--fps", "15,25",
    ])  # fmt: skip
    # the embedded Ray starts here; 3 logical CPUs: the 2 training workers plus Ray Data's ingest
    run("extract (untrained)", extract.main, [
        "--config", EXTRACT_CONFIG, "--input", f"{corpus}/videos", "--output", untrained,
        "--num-cpus", "3", "--cfg-options", classes,
    ])  # fmt: skip
    run("train", train.main, [
        "--config", TRAIN_CONFIG, "--features", f"{untrained}", "--annotations",
        f"{corpus}/annotations.json", "--output", model, "--num-workers", "2",
        "--cfg-options", f"model.num_action_classes={args.num_classes}",
    ])  # fmt: skip
    run("extract (trained)", extract.main, [
        "--config", EXTRACT_CONFIG, "--input", f"{corpus}/videos", "--output", trained,
        "--checkpoint", f"{model}/best.pth",
    ])  # fmt: skip
    results = {}
    for name, where in (("untrained", untrained), ("trained", trained)):
        run(f"evaluate ({name})", evaluate.main, [
            "--proposals", f"{where}/proposals", "--annotations", f"{corpus}/annotations.json",
            "--output", f"{where}/eval", "--subset", "validation",
        ])  # fmt: skip
        with open(f"{where}/eval/metrics.json") as f:
            results[name] = json.load(f)
    print_table(results, out)
    return 0


def top_label_counts(proposals_uri: str, top: int = 5) -> dict[str, int]:
    """How often each label names one of a video's ``top`` proposals, most frequent first."""
    table = read_proposals(proposals_uri)
    labels = table.filter(pc.less(table["rank"], top))["label"]
    counts = pc.value_counts(labels).to_pylist()
    return dict(sorted(((c["values"], c["counts"]) for c in counts), key=lambda kv: -kv[1]))


def print_table(results: dict[str, dict], out: str) -> None:
    rows = [f"{'validation':<12}" + "".join(f"{m:>10}" for m in METRICS)]
    for name, metrics in results.items():
        rows.append(
            f"{name:<12}" + "".join(f"{metrics.get(m, float('nan')):>10.3f}" for m in METRICS)
        )
    trained = results["trained"]
    per_class = [f"  {'class':<32}{'AP':>6}{'AP@0.5':>8}"]
    for label, ap in trained.get("per_class_AP", {}).items():
        per_class.append(f"  {label:<32}{ap:>6.3f}{trained['per_class_AP@0.5'][label]:>8.3f}")
    spread = [f"  {'label':<32}{'n':>6}"]
    spread += [
        f"  {label:<32}{n:>6}" for label, n in top_label_counts(f"{out}/trained/proposals").items()
    ]
    evaluation = f"{out}/trained/eval"
    lines = [
        "",
        "Demo finished: the localizer trained on the synthetic corpus against the untrained one",
        "(AR@N and mAP fractions, AUC percent):",
        *rows,
        "",
        "Per-class AP of the trained localizer (mean over tIoU 0.5:0.95, and at 0.5):",
        *per_class,
        "",
        "Labels of each video's top 5 proposals (trained):",
        *spread,
        "",
        f"  proposals (trained): {out}/trained/proposals/   features: {out}/untrained/features/",
        f"  model: {out}/model/best.pth   metrics: {evaluation}/metrics.json",
        f"  figures: {evaluation}/per_class_ap.png, {evaluation}/confusion.png, "
        f"{evaluation}/ar_an.png, {evaluation}/timelines.png",
        "  query: "
        + tables.duckdb_command(
            "SELECT label, count(*) AS n, round(avg(label_score), 3) AS conf FROM read_parquet("
            f"'{out}/trained/proposals/**/*.parquet', hive_partitioning=true) "
            "WHERE rank < 5 GROUP BY label ORDER BY n DESC"
        ),
    ]
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    raise SystemExit(main())
