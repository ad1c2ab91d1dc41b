"""The closed loop through the jobs' command lines, on a corpus no setting was tuned on:
make_corpus (60 videos, 5 classes) → extract (configs/extract/demo.py, untrained localizer:
the features) → train (configs/train/demo.py) → extract with the trained best.pth →
evaluate on the validation videos. The labelled proposals must find the actions and name
them: validation mAP and AR@100 well above what the lecture's head gave, every class detected,
and the top proposals' labels spread over the classes rather than one class everywhere.

Measured on this corpus (2026-12-01, 2 CPUs): mAP 0.482, mAP@0.5 0.627, AR@10 0.844, AR@100
0.887, per-class AP 0.25-0.76. The bounds sit below that run; the product's goal, mAP >= 0.5
and AR@100 >= 0.9, is not reached yet with the demo's features (random-weight ResNet-18 at
64 px: a linear classifier of ground-truth segments reaches only 65-85 % on held-out videos).
The lecture's pointwise head, trained as the demo trained it before (12 epochs), gave mAP 0.0
and one label on nearly every top proposal. The whole loop took 13.5 min wall on 2 cores
shared with other work (load average about 10)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SEED = 11  # a corpus seed that no setting of the configs was chosen on
NUM_VIDEOS, NUM_CLASSES = 60, 5
MAP_MIN, AR100_MIN = 0.4, 0.85

pytestmark = pytest.mark.integration


def run_job(module: str, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, f"{module}: {(result.stdout + result.stderr)[-4000:]}"


@pytest.fixture(scope="module")
def loop(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("closed_loop")
    corpus, feats, model, trained = (str(out / n) for n in ("corpus", "feats", "model", "trained"))
    classes = f"model.num_action_classes={NUM_CLASSES}"
    run_job("jobs.make_corpus", "--output", corpus, "--num-videos", str(NUM_VIDEOS),
            "--num-classes", str(NUM_CLASSES), "--seed", str(SEED), "--min-duration", "6",
            "--max-duration", "16", "--resolutions", "320x240", "--fps", "15,25")  # fmt: skip
    run_job("jobs.extract", "--config", "configs/extract/demo.py", "--input", f"{corpus}/videos",
            "--output", feats, "--num-cpus", "3", "--cfg-options", classes)  # fmt: skip
    run_job("jobs.train", "--config", "configs/train/demo.py", "--features", feats,
            "--annotations", f"{corpus}/annotations.json", "--output", model,
            "--num-workers", "2", "--num-cpus", "3", "--cfg-options", classes)  # fmt: skip
    run_job("jobs.extract", "--config", "configs/extract/demo.py", "--input", f"{corpus}/videos",
            "--output", trained, "--num-cpus", "3", "--checkpoint", f"{model}/best.pth")  # fmt: skip
    run_job("jobs.evaluate", "--proposals", f"{trained}/proposals", "--annotations",
            f"{corpus}/annotations.json", "--output", str(out / "eval"),
            "--subset", "validation")  # fmt: skip
    return out


def test_trained_localizer_finds_and_names_the_actions(loop):
    metrics = json.loads((loop / "eval" / "metrics.json").read_text())
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


def test_final_outputs_hold_the_report_figures(loop):
    for folder in (loop / "eval", loop / "model"):
        for name in ("metrics.json", "ar_an.png", "per_class_ap.png", "confusion.png",
                     "timelines.png"):  # fmt: skip
            assert (folder / name).stat().st_size > 0, folder / name
    assert (loop / "model" / "training_curves.png").stat().st_size > 0
    confusion = json.loads((loop / "eval" / "metrics.json").read_text())["confusion_matrix"]
    assert len(confusion["counts"]) == NUM_CLASSES
    assert len(confusion["columns"]) == NUM_CLASSES + 1
