"""The closed loop as ``make demo`` runs it, on a corpus no setting was tuned on: make_corpus
(60 videos, 5 classes) → extract (configs/extract/demo.py, untrained localizer: the features)
→ train (configs/train/demo.py) → extract with the trained best.pth → evaluate on the
validation videos, each step the real job's ``main()`` in one process (``jobs.demo``), so one
embedded Ray serves them all. The labelled proposals must find the actions and name them:
the product's goal, validation mAP >= 0.5 and AR@100 >= 0.9, every class detected, and the
top proposals' labels spread over the classes rather than one class everywhere.

The recipe (features, T, head, epochs) was chosen on corpus seeds 101 and 102 (mAP 0.71-0.77,
AR@100 0.925-0.94). Checked on seeds it was not chosen on (2026-12-01, 2 CPUs shared with
other work): seed 201 mAP 0.871, AR@100 0.944 (this test: 8 min 40 s wall at load average
15-20); seeds 202 and 203 in README.md ("The demo's recipe"). The last epoch's model passes
too, not only the best one. Before (full ResNet-18, 512-d averages, T=32) seed 11 gave mAP
0.482, AR@100 0.887."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SEED = 201  # a corpus seed that no setting of the configs was chosen on
NUM_VIDEOS, NUM_CLASSES = 60, 5
MAP_MIN, AR100_MIN = 0.5, 0.9

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def loop(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("closed_loop")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "jobs.demo", "--output", str(out), "--num-videos",
         str(NUM_VIDEOS), "--num-classes", str(NUM_CLASSES), "--seed", str(SEED)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (out / "demo_stdout.txt").write_text(result.stdout)
    return out


def test_trained_localizer_finds_and_names_the_actions(loop):
    metrics = json.loads((loop / "trained" / "eval" / "metrics.json").read_text())
    report = {k: round(metrics[k], 3) for k in ("AR@10", "AR@100", "mAP", "mAP@0.5")}
    report["per_class_AP"] = {k: round(v, 2) for k, v in metrics["per_class_AP"].items()}
    assert metrics["mAP"] >= MAP_MIN, report
    assert metrics["AR@100"] >= AR100_MIN, report
    # every class with validation segments is detected at all
    assert min(metrics["per_class_AP@0.5"].values()) > 0.0, report


def test_labels_spread_over_the_classes(loop):
    import duckdb

    classes = json.loads((loop / "corpus" / "annotations.json").read_text())["classes"]
    rows = duckdb.sql(
        f"SELECT label, count(*) FROM read_parquet('{loop}/trained/proposals/**/*.parquet') "
        "WHERE rank < 5 GROUP BY label"
    ).fetchall()
    counts = dict(rows)
    assert set(counts) <= set(classes)
    assert len(counts) == len(classes), counts
    assert max(counts.values()) <= 0.5 * sum(counts.values()), counts
    # the demo prints the same spread, class by class
    printed = (loop / "demo_stdout.txt").read_text()
    for label, n in counts.items():
        assert f"{label:<32}{n:>6}" in printed, (label, n, printed[-2000:])


def test_final_outputs_hold_the_report_figures(loop):
    for folder in (loop / "trained" / "eval", loop / "model"):
        for name in ("metrics.json", "ar_an.png", "per_class_ap.png", "confusion.png",
                     "timelines.png"):  # fmt: skip
            assert (folder / name).stat().st_size > 0, folder / name
    assert (loop / "model" / "training_curves.png").stat().st_size > 0
    confusion = json.loads((loop / "trained" / "eval" / "metrics.json").read_text())[
        "confusion_matrix"
    ]
    assert len(confusion["counts"]) == NUM_CLASSES
    assert len(confusion["columns"]) == NUM_CLASSES + 1
    printed = (loop / "demo_stdout.txt").read_text()
    assert "per_class_ap.png" in printed and "confusion.png" in printed
