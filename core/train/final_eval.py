"""After training: export the best checkpoint as ``best.pth``, evaluate it, draw the curves.

* :func:`export_best` turns a Ray Train checkpoint (the train state) into the localizer
  checkpoint format of :mod:`core.models.localizer`, what ``jobs.extract --checkpoint`` takes.
* :func:`final_evaluation` (run as a Ray task by the trainer) loads ``best.pth`` like extract
  does, proposes on the validation videos and writes what ``jobs.evaluate`` writes
  (:func:`core.eval.report.write_report`: metrics.json, AR-AN curve, per-class AP, confusion
  matrix, timelines).
* :func:`write_training_curves` draws losses and validation metrics per epoch.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core import storage
from core.eval.metrics import evaluate_full
from core.eval.report import write_report
from core.io.checkpoint import save_checkpoint
from core.models.localizer import checkpoint_payload, load_localizer
from core.train import data
from core.train.evaluation import predict

log = logging.getLogger(__name__)

BEST = "best.pth"
CURVES_PNG = "training_curves.png"
HISTORY = "history.json"
CURVE_LOSSES = ("loss", "tem", "pem_reg", "pem_cls", "action_cls")
CURVE_METRICS = ("AUC", "mAP")


def export_best(
    saved_state: Mapping[str, Any],
    model_cfg: Mapping[str, Any],
    class_names: list[str],
    uri: str,
    **meta: Any,
) -> str:
    """Writes the train state's weights as a localizer checkpoint; returns its sha256."""
    from core.models import build_bmn_cls

    model = build_bmn_cls(model_cfg)
    model.load_state_dict(saved_state["model"], strict=True)
    payload = checkpoint_payload(
        model, model_cfg, class_names, epoch=int(saved_state["epoch"]), **meta
    )
    return save_checkpoint(payload, uri)


def final_evaluation(
    best_uri: str,
    training_set: data.TrainingSet,
    output_uri: str,
    device: str = "cpu",
    dtype: str = "float32",
    batch_size: int = 32,
) -> dict:
    """Metrics of ``best.pth`` on the validation videos, written with their figures.

    Returns:
        The metrics.json dict.
    """
    shard = data.read_split_features(training_set, data.VAL)
    localizer = load_localizer({}, best_uri, device=device, dtype=dtype)
    frame = predict(localizer, shard, batch_size)
    if localizer.model.num_action_classes == 0:
        frame = frame.drop(columns=["label", "label_score"])
    evaluation = evaluate_full(
        frame, training_set.val_annotations, classes=training_set.class_names
    )
    return write_report(evaluation, output_uri, extra={"checkpoint": best_uri})


def curves_figure(history: Sequence[Mapping[str, float]]) -> Figure:
    """Training losses (left) and validation AUC and mAP (right) against the epoch."""
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
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
    buffer = io.BytesIO()
    curves_figure(history).savefig(buffer, format="png")
    storage.write_bytes(uri, buffer.getvalue())
