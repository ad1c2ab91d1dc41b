"""Validation of a localizer on features in memory: proposals, then core.eval's metrics.

Proposals come from :class:`core.models.localizer.Localizer`, the path jobs.extract runs, so
the numbers a training run reports are the numbers extract's proposals would get.
:class:`BackgroundValidation` runs it for each epoch's weights in a thread while the next
epoch trains.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any

import numpy as np
import pandas as pd
import torch

from core.eval.annotations import Annotations
from core.eval.metrics import Evaluation, EvaluationInputError, evaluate_full
from core.io.tables import VIDEO_ID
from core.models.localizer import Localizer
from core.train.data import ShardArrays

log = logging.getLogger(__name__)

HEADLINE = ("AR@1", "AR@5", "AR@10", "AR@100", "AUC", "mAP", "mAP@0.5", "mAP@0.75", "mAP@0.95")


def proposals_frame(
    video_ids: list[str],
    props_BP4: np.ndarray,
    label_BP: np.ndarray,
    valid_BP: np.ndarray,
    class_names: list[str],
) -> pd.DataFrame:
    """The rows of :meth:`Localizer.propose`'s padded output in the proposals table's columns."""
    b_idx, p_idx = np.nonzero(valid_BP)
    props_M4 = props_BP4[b_idx, p_idx]
    label_M = label_BP[b_idx, p_idx].astype(np.int64)
    names = np.asarray([*class_names, ""], dtype=object)  # -1 (no head) -> ""
    return pd.DataFrame(
        {
            VIDEO_ID: np.asarray(video_ids, dtype=object)[b_idx],
            "t_start": props_M4[:, 0],
            "t_end": props_M4[:, 1],
            "score": props_M4[:, 2],
            "label": names[label_M],
            "label_id": label_M,
            "label_score": props_M4[:, 3],
        }
    )


def predict(localizer: Localizer, shard: ShardArrays, batch_size: int) -> pd.DataFrame:
    """Proposals of every video of the shard, in batches."""
    frames = []
    for i in range(0, len(shard), batch_size):
        sl = slice(i, i + batch_size)
        props, labels, valid = localizer.propose(shard.feats_NCT[sl], shard.durations_N[sl])
        frames.append(
            proposals_frame(shard.video_ids[sl], props, labels, valid, localizer.class_names)
        )
    return pd.concat(frames, ignore_index=True) if frames else proposals_frame([], *_empty())


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    return np.zeros((0, 0, 4)), np.zeros((0, 0), np.int32), np.zeros((0, 0), bool), []


def evaluate_localizer(
    localizer: Localizer,
    shard: ShardArrays,
    annotations: Annotations,
    batch_size: int,
    seconds: dict[str, float] | None = None,
) -> Evaluation:
    """AR@AN, AUC and detection mAP of the localizer's proposals on the shard's videos
    (``seconds``: gets the time of each part, ``predict`` and ``evaluate``)."""
    start = time.perf_counter()
    frame = predict(localizer, shard, batch_size)
    predicted = time.perf_counter()
    if localizer.model.num_action_classes == 0:
        frame = frame.drop(columns=["label", "label_score"])
    evaluation = evaluate_full(frame, annotations, classes=localizer.class_names)
    if seconds is not None:
        seconds["predict"] = predicted - start
        seconds["evaluate"] = time.perf_counter() - predicted
    return evaluation


def headline(metrics: dict) -> dict[str, float]:
    """The scalar metrics reported per epoch (those of :data:`HEADLINE` that are present)."""
    return {k: float(metrics[k]) for k in HEADLINE if k in metrics}


def validation_evaluation(
    localizer: Localizer,
    shard: ShardArrays,
    annotations: Annotations,
    batch_size: int,
    seconds: dict[str, float] | None = None,
) -> Evaluation | None:
    """:func:`evaluate_localizer`, or None with a warning when nothing could be evaluated."""
    try:
        return evaluate_localizer(localizer, shard, annotations, batch_size, seconds)
    except EvaluationInputError as e:
        log.warning("validation could not be evaluated (%s): metrics are 0", e)
        return None


def headline_of(evaluation: Evaluation | None) -> dict[str, float]:
    """The :func:`headline` metrics of an evaluation, zeros for None."""
    return dict.fromkeys(HEADLINE, 0.0) if evaluation is None else headline(evaluation.metrics)


def validation_metrics(
    localizer: Localizer, shard: ShardArrays, annotations: Annotations, batch_size: int
) -> dict[str, float]:
    """:func:`headline` metrics, zeros with a warning when nothing could be evaluated."""
    return headline_of(validation_evaluation(localizer, shard, annotations, batch_size))


class BackgroundValidation:
    """Validates each epoch's weights in a second thread, on a copy of the model, while the
    training thread goes on with the next epoch.

    :meth:`submit` copies the weights into the copy on the training thread's stream (so the
    copy sees the epoch's last step and none of the next), then the thread proposes and
    evaluates: the metrics are those of validating in line. On CUDA the thread runs on a
    stream of its own, which waits for that copy, so its kernels run beside the next epoch's
    instead of queueing behind them. Wait (:meth:`wait`) before capturing a CUDA graph: a
    capture admits no other work on the device.

    Args:
        model: a copy of the trained model (same config and memory layout), on its device.
        shard, annotations, class_names, dtype, batch_size: what :func:`validation_evaluation`
            runs on.
        skip: state_dict entries that never change (constants), not copied.
    """

    def __init__(
        self, model: torch.nn.Module, shard: ShardArrays, annotations: Annotations,
        class_names: list[str], dtype: str, batch_size: int, skip: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        device = next(model.parameters()).device
        self.localizer = Localizer(model, class_names, str(device), dtype)
        self.shard, self.annotations, self.batch_size = shard, annotations, batch_size
        self.skip = skip
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="validation")
        self._pending: Future | None = None

    @torch.no_grad()
    def submit(self, model: torch.nn.Module) -> None:
        """Starts validating ``model``'s current weights (the previous result must be taken)."""
        if self._pending is not None:
            raise RuntimeError("the previous epoch's validation was not taken")
        if self.stream is not None:  # the previous validation's work is done before the copy
            torch.cuda.current_stream().wait_stream(self.stream)
        own = self.localizer.model.state_dict()
        for key, value in model.state_dict().items():
            if key not in self.skip:
                own[key].copy_(value)
        if self.stream is not None:  # the validation starts after the copy
            self.stream.wait_stream(torch.cuda.current_stream())
        self._pending = self._pool.submit(self._evaluate)

    def _evaluate(self) -> tuple[Evaluation | None, dict[str, float]]:
        start, seconds = time.perf_counter(), {}
        with torch.cuda.stream(self.stream) if self.stream is not None else nullcontext():
            evaluation = validation_evaluation(
                self.localizer, self.shard, self.annotations, self.batch_size, seconds
            )
        metrics: dict[str, Any] = headline_of(evaluation)
        metrics["val_seconds"] = time.perf_counter() - start
        metrics |= {f"val_{part}_seconds": value for part, value in seconds.items()}
        return evaluation, metrics

    def wait(self) -> None:
        """Blocks until the submitted validation is done (e.g. before a graph capture)."""
        if self._pending is not None:
            self._pending.exception()

    def result(self) -> tuple[Evaluation | None, Mapping[str, float]]:
        """The submitted validation's evaluation and headline metrics (with ``val_seconds``,
        its own duration, and ``val_predict_seconds`` / ``val_evaluate_seconds``, its parts);
        raises what it raised."""
        if self._pending is None:
            raise RuntimeError("no validation was submitted")
        pending, self._pending = self._pending, None
        return pending.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
