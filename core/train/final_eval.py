"""After training: export the best checkpoint as ``best.pth``, evaluate it, draw the curves.

* :func:`export_best` turns train-state weights into the localizer checkpoint format of
  :mod:`core.models.localizer`, what ``jobs.extract --checkpoint`` takes.
* :func:`write_outputs` is the final task as rank 0 runs it after the last epoch, in the
  training process: the best epoch's weights and its validation evaluation are still in
  memory, so it exports them and writes what ``jobs.evaluate`` writes
  (:func:`core.train.figures.write_report`, the files of :func:`core.eval.report.write_report`:
  metrics.json, AR-AN curve, per-class AP, confusion matrix, timelines) without loading a model or proposing again.
* :func:`final_evaluation` is the same task for a run whose best epoch was trained by an
  earlier process (a resumed run): a Ray task loads ``best.pth`` like extract does and
  proposes on the validation videos.
* :func:`write_training_curves` (:mod:`core.train.figures`) draws losses and validation
  metrics per epoch.

Train checkpoints leave out the model's :data:`CONSTANTS` (rebuilt from the config);
:func:`full_state_dict` puts them back for a strict load.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from core import storage
from core.eval.metrics import evaluate_full
from core.io.checkpoint import save_checkpoint
from core.models.localizer import checkpoint_payload, load_localizer
from core.train import data, figures
from core.train.evaluation import predict
from core.train.figures import CURVE_LOSSES, curves_figure, write_training_curves  # noqa: F401

log = logging.getLogger(__name__)

BEST = "best.pth"
CURVES_PNG = "training_curves.png"
HISTORY = "history.json"
CURVE_METRICS = ("AUC", "mAP")
CONSTANTS = ("sample_mask",)
"""Model entries rebuilt from the config (MMAction2's 128 MB sample mask at T = 100): left out
of train checkpoints, taken from the freshly built model on load."""


def host_copy(obj: Any) -> Any:
    """Tensors in (nested) dicts and lists copied to the host: a snapshot that stays as it is
    while training goes on. Device tensors go to pinned memory asynchronously, all of them
    waited for once: a wait per tensor lets go of the GIL each time and, beside a running
    validation, takes it back only after the validation thread's turn (the likely cause of
    1.7-2.0 s more unaccounted time in a 9-epoch run on an H100 when the validations began to
    overlap the snapshots)."""
    pending: list[torch.Tensor] = []
    out = _host_copy(obj, pending)
    if pending:  # the copies were queued on the current stream: wait for that stream only
        done = torch.cuda.Event()
        done.record()
        done.synchronize()
    return out


def _host_copy(obj: Any, pending: list[torch.Tensor]) -> Any:
    if torch.is_tensor(obj):
        obj = obj.detach()
        if obj.device.type != "cuda":
            return obj.to("cpu", copy=True)
        out = torch.empty_like(obj, device="cpu", pin_memory=True)
        pending.append(out.copy_(obj, non_blocking=True))
        return out
    if isinstance(obj, dict):
        return {k: _host_copy(v, pending) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_host_copy(v, pending) for v in obj)
    return obj


def full_state_dict(
    model: torch.nn.Module, weights: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Saved weights completed with the model's :data:`CONSTANTS` (for a strict load)."""
    own = model.state_dict()
    return {**{k: own[k] for k in CONSTANTS if k in own and k not in weights}, **weights}


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
    model.load_state_dict(full_state_dict(model, saved_state["model"]), strict=True)
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
    shard = data.read_features(training_set, data.VAL)
    localizer = load_localizer({}, best_uri, device=device, dtype=dtype)
    frame = predict(localizer, shard, batch_size)
    if localizer.model.num_action_classes == 0:
        frame = frame.drop(columns=["label", "label_score"])
    evaluation = evaluate_full(
        frame, training_set.val_annotations, classes=training_set.class_names
    )
    return figures.write_report(evaluation, output_uri, extra={"checkpoint": best_uri})


def write_outputs(
    best, history: Sequence[Mapping[str, Any]], model_cfg: Mapping[str, Any],
    training_set: data.TrainingSet, output_uri: str, cfg,
    figure_pool: figures.FigurePool | None = None,
) -> dict:  # fmt: skip
    """The final task from memory (see the module docstring): ``best.pth``, history.json,
    the training curves and (with ``cfg.final_eval``) metrics.json and its figures, the
    figures side by side (:mod:`core.train.figures`). The export runs in a second thread (it
    mostly waits on compression and writes outside Python).

    Args:
        best: :class:`core.train.loop.BestEpoch` with weights and evaluation.
        cfg: the run's :class:`core.train.config.TrainConfig`.
        figure_pool: where the figures are drawn side by side (else in turn, here).

    Returns:
        The sha256 of best.pth.
    """
    best_uri = storage.join(output_uri, BEST)
    entry = next(h for h in history if h["epoch"] == best.epoch)
    saved = {"model": best.weights, "epoch": best.epoch}
    with ThreadPoolExecutor(1, thread_name_prefix="export-best") as pool:
        export = pool.submit(
            export_best, saved, model_cfg, training_set.class_names, best_uri,
            metrics=dict(entry), seed=cfg.seed,
        )  # fmt: skip
        storage.write_json(storage.join(output_uri, HISTORY), list(history))
        figures.write_report(
            best.evaluation if cfg.final_eval else None, output_uri,
            extra={"checkpoint": best_uri}, curves=(history, storage.join(output_uri, CURVES_PNG)),
            pool=figure_pool,
        )  # fmt: skip
        return export.result()  # raises what the export raised
