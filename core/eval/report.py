"""What an evaluation writes: ``metrics.json`` and its figures, in one output folder.

Both ``jobs.evaluate`` and the training run's final task write through :func:`write_report`,
so the two folders hold the same files:

    metrics.json       the metrics (core.eval.metrics), per-class AP, the confusion matrix
    ar_an.png          the AR-AN curve
    per_class_ap.png   AP of each class (with labels)
    confusion.png      ground-truth class against the label that found it (with labels)
    timelines.png      a few videos: ground truth against their top proposals (with labels)
"""

from __future__ import annotations

from typing import Any

from core import storage
from core.eval import plots
from core.eval.metrics import Evaluation

METRICS = "metrics.json"
AR_AN_PNG = "ar_an.png"
PER_CLASS_AP_PNG = "per_class_ap.png"
CONFUSION_PNG = "confusion.png"
TIMELINES_PNG = "timelines.png"


def timeline_videos(evaluation: Evaluation, count: int) -> list:
    """The first ``count`` evaluated videos (in id order) that have ground truth."""
    videos = [evaluation.annotations[k] for k in sorted(evaluation.annotations)]
    return [v for v in videos if v.labels][:count]


def write_report(
    evaluation: Evaluation, output_uri: str, extra: dict[str, Any] | None = None,
    num_timelines: int = 4,
) -> dict:  # fmt: skip
    """Writes metrics.json (the evaluation's metrics plus ``extra``) and the PNGs.

    Returns:
        The metrics.json dict.
    """
    metrics = {**evaluation.metrics, **(extra or {})}
    storage.write_json(storage.join(output_uri, METRICS), metrics)
    plots.write_ar_an_png(evaluation.ar_an, storage.join(output_uri, AR_AN_PNG))
    if evaluation.detection is not None:
        figure = plots.per_class_ap_figure(evaluation.detection)
        plots.write_png(figure, storage.join(output_uri, PER_CLASS_AP_PNG))
    if evaluation.confusion is not None:
        figure = plots.confusion_figure(evaluation.confusion)
        plots.write_png(figure, storage.join(output_uri, CONFUSION_PNG))
    if evaluation.detection is not None and evaluation.proposals is not None and num_timelines:
        figure = plots.timeline_figure(
            timeline_videos(evaluation, num_timelines), evaluation.proposals,
            evaluation.class_names,
        )  # fmt: skip
        plots.write_png(figure, storage.join(output_uri, TIMELINES_PNG))
    return metrics
