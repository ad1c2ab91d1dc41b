"""The training run's figures, drawn side by side: the final task's wait is the slowest one.

Each PNG is a :mod:`matplotlib` job of its own that holds the GIL for its whole length
(at ActivityNet's 200 classes the per-class AP chart and the confusion matrix take seconds
each), so rank 0 of a run keeps a :class:`FigurePool` of Ray actors, started with the run
and warm by its end, and the final task waits for the slowest figure; without a pool they
are drawn one after the other in this process.

:func:`write_report` writes what :func:`core.eval.report.write_report` writes (metrics.json
first, then the same PNGs under the same names), plus the training curves.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core import storage
from core.eval import plots, report
from core.eval.metrics import Evaluation

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CURVE_LOSSES = ("loss", "tem", "pem_reg", "pem_cls", "action_cls")


def curves_figure(history: Sequence[Mapping[str, float]]) -> Figure:
    """Training losses (left) and validation AUC and mAP (right) against the epoch."""
    fig = plots.new_figure((10, 4))
    epochs = [h["epoch"] for h in history]
    ax_loss, ax_val = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for key in CURVE_LOSSES:
        if all(key in h for h in history):
            ax_loss.plot(epochs, [h[key] for h in history], marker="o", label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (mean over the epoch)")
    ax_loss.set_yscale("log")
    ax_loss.legend(fontsize=8)
    ax_loss.grid(True, linestyle=":", linewidth=0.5)
    if all("AUC" in h for h in history):
        ax_val.plot(epochs, [h["AUC"] / 100 for h in history], marker="o", label="AUC / 100")
    for key in ("AR@100", "mAP"):
        if all(key in h for h in history):
            ax_val.plot(epochs, [h[key] for h in history], marker="o", label=key)
    ax_val.set_xlabel("epoch")
    ax_val.set_ylabel("validation")
    ax_val.set_ylim(0, 1)
    ax_val.legend(fontsize=8)
    ax_val.grid(True, linestyle=":", linewidth=0.5)
    fig.tight_layout()
    return fig


def write_training_curves(history: Sequence[Mapping[str, float]], uri: str) -> None:
    storage.write_bytes(uri, plots.png_bytes(curves_figure(history)))


def draw(kind: str, args: tuple, uri: str) -> None:
    """Draws one figure (``kind``: a key of :data:`FIGURES`) of ``args`` and writes it."""
    if kind == "curves":
        write_training_curves(*args, uri)
    elif kind == "ar_an":
        plots.write_ar_an_png(*args, uri)
    else:
        plots.write_png(FIGURES[kind](*args), uri)


FIGURES = {
    "per_class_ap": plots.per_class_ap_figure,
    "confusion": plots.confusion_figure,
    "timelines": plots.timeline_figure,
}


def report_figures(
    evaluation: Evaluation, output_uri: str, num_timelines: int = 4
) -> list[tuple[str, tuple, str]]:
    """``(kind, args, uri)`` of every figure :func:`core.eval.report.write_report` draws."""
    jobs = [("ar_an", (evaluation.ar_an,), storage.join(output_uri, report.AR_AN_PNG))]
    if evaluation.detection is not None:
        uri = storage.join(output_uri, report.PER_CLASS_AP_PNG)
        jobs.append(("per_class_ap", (evaluation.detection,), uri))
    if evaluation.confusion is not None:
        jobs.append(("confusion", (evaluation.confusion,),
                     storage.join(output_uri, report.CONFUSION_PNG)))  # fmt: skip
    if evaluation.detection is not None and evaluation.proposals is not None and num_timelines:
        videos = report.timeline_videos(evaluation, num_timelines)
        args = (videos, evaluation.proposals, evaluation.class_names)
        jobs.append(("timelines", args, storage.join(output_uri, report.TIMELINES_PNG)))
    return jobs


def draw_all(jobs: Sequence[tuple[str, tuple, str]], pool: FigurePool | None = None) -> None:
    """Draws the figures: on ``pool``'s processes side by side, else in turn here. Raises
    what a figure raised."""
    if pool is None:
        for job in jobs:
            draw(*job)
        return
    pool.draw_all(jobs)


class _Drawer:
    """A process that draws figures (a Ray actor of :class:`FigurePool`)."""

    def __init__(self) -> None:
        fig = plots.new_figure((1, 1))  # matplotlib, its font cache and Agg, loaded now
        fig.add_subplot(1, 1, 1).set_title("warm-up")
        fig.savefig(io.BytesIO(), format="png")

    def draw(self, kind: str, args: tuple, uri: str) -> None:
        draw(kind, args, uri)


class FigurePool:
    """Processes kept warm for the final task's figures: Ray actors (``num_cpus=0``: they
    start whatever the cluster's CPUs are booked for, and draw for seconds), started when the
    run starts so that their imports are done long before the figures are drawn (a task
    started at the end would wait for them). Needs a connected Ray.

    Args:
        size: the actors; figures are dealt to them in turn (the costliest first).
    """

    def __init__(self, size: int = 3) -> None:
        import ray

        actor = ray.remote(num_cpus=0, max_restarts=0)(_Drawer)
        self.actors = [actor.remote() for _ in range(size)]

    def draw_all(self, jobs: Sequence[tuple[str, tuple, str]]) -> None:
        import ray

        ordered = sorted(jobs, key=lambda job: COST_ORDER.index(job[0]))
        refs = [self.actors[i % len(self.actors)].draw.remote(*job)
                for i, job in enumerate(ordered)]  # fmt: skip
        ray.get(refs)

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


COST_ORDER = ("confusion", "per_class_ap", "timelines", "ar_an", "curves")
"""Figure kinds from the costliest to draw (at 200 classes) to the cheapest."""


def write_report(
    evaluation: Evaluation | None, output_uri: str, extra: dict[str, Any] | None = None,
    curves: tuple[Sequence[Mapping[str, float]], str] | None = None,
    pool: FigurePool | None = None,
) -> dict | None:  # fmt: skip
    """metrics.json of ``evaluation`` (plus ``extra``), then its figures and (``curves``:
    history and URI) the training curves, side by side on ``pool`` (:func:`draw_all`).

    Returns:
        The metrics.json dict, None without an evaluation.
    """
    jobs = [("curves", (curves[0],), curves[1])] if curves is not None else []
    metrics = None
    if evaluation is not None:
        metrics = {**evaluation.metrics, **(extra or {})}
        storage.write_json(storage.join(output_uri, report.METRICS), metrics)
        jobs = report_figures(evaluation, output_uri) + jobs
    draw_all(jobs, pool)
    return metrics
