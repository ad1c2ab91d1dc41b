"""core.train.figures: the final task's report, drawn in turn or on a pool of Ray actors, writes
what core.eval.report.write_report writes, plus the training curves."""

from __future__ import annotations

import json

import pytest

from core.eval.report import write_report
from core.train import figures
from tests.unit.samples import two_video_evaluation

pytestmark = pytest.mark.unit

HISTORY = [dict(epoch=e, loss=3.0 / e, AUC=20.0 * e, mAP=0.1 * e) for e in (1, 2)]


@pytest.fixture(scope="module")
def evaluation():
    return two_video_evaluation()


def pngs(folder) -> set[str]:
    return {p.name for p in folder.iterdir() if p.read_bytes()[:4] == b"\x89PNG"}


def check_against_eval_report(evaluation, tmp_path, out) -> None:
    reference = tmp_path / "reference"
    expected = write_report(evaluation, str(reference), extra={"checkpoint": "x"})
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(expected))
    assert pngs(out) == pngs(reference) | {"curves.png"}
    assert len(pngs(reference)) == 4  # ar_an, per_class_ap, confusion, timelines


def test_in_process_writes_the_eval_report_and_the_curves(evaluation, tmp_path):
    out = tmp_path / "run"
    curves = (HISTORY, str(out / "curves.png"))
    metrics = figures.write_report(evaluation, str(out), extra={"checkpoint": "x"}, curves=curves)
    assert metrics["checkpoint"] == "x" and metrics["mAP"] == evaluation.metrics["mAP"]
    check_against_eval_report(evaluation, tmp_path, out)


def test_without_an_evaluation_only_the_curves(tmp_path):
    assert figures.write_report(None, str(tmp_path), curves=(HISTORY, str(tmp_path / "c.png")))\
        is None  # fmt: skip
    assert pngs(tmp_path) == {"c.png"} and not (tmp_path / "metrics.json").exists()


def test_on_a_pool_of_ray_actors_writes_the_same(evaluation, tmp_path):
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, configure_logging=False)
    pool = figures.FigurePool(size=2)
    try:
        out = tmp_path / "run"
        curves = (HISTORY, str(out / "curves.png"))
        figures.write_report(evaluation, str(out), {"checkpoint": "x"}, curves=curves, pool=pool)
        check_against_eval_report(evaluation, tmp_path, out)
        with pytest.raises(Exception, match="counts_CC1"):  # a figure's error reaches the caller
            figures.draw_all([("confusion", (None,), str(out / "x.png"))], pool)
    finally:
        pool.close()
        if started:
            ray.shutdown()
