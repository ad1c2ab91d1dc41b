"""Validation of a localizer on features in memory: proposals, then core.eval's metrics.

Proposals come from :class:`core.models.localizer.Localizer`, the path jobs.extract runs, so
the numbers a training run reports are the numbers extract's proposals would get.
:class:`BackgroundValidation` runs it for each epoch's weights in a thread while the next
epoch trains.
"""

from __future__ import annotations

import logging
import time
from collections import deque
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
    training thread goes on with the next epochs.

    :meth:`submit` snapshots the weights on the training thread's stream (so the snapshot
    holds the epoch's last step and none of the next); the thread copies a snapshot into the
    model copy, proposes and evaluates: the metrics are those of validating in line. The
    validations run in submission order, up to ``max_behind`` of them queued or running
    (``submit`` waits for the oldest beyond that: each holds a snapshot on the device), so
    training never waits for an epoch's validation until :meth:`result` asks for it. On CUDA
    the thread runs on a stream of its own, which waits for the snapshot, so its kernels run
    beside the next epoch's instead of queueing behind them. Wait (:meth:`wait`) before
    capturing a CUDA graph: a capture admits no other work on the device.

    Args:
        model: a copy of the trained model (same config and memory layout), on its device.
        shard, annotations, class_names, dtype, batch_size: what :func:`validation_evaluation`
            runs on.
        skip: state_dict entries that never change (constants), not copied.
        max_behind: validations queued or running at most.
    """

    def __init__(
        self, model: torch.nn.Module, shard: ShardArrays, annotations: Annotations,
        class_names: list[str], dtype: str, batch_size: int, skip: tuple[str, ...] = (),
        max_behind: int = 3,
    ) -> None:  # fmt: skip
        device = next(model.parameters()).device
        self.localizer = Localizer(model, class_names, str(device), dtype)
        self.shard, self.annotations, self.batch_size = shard, annotations, batch_size
        self.skip, self.max_behind = skip, max(1, max_behind)
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="validation")
        self._pending: deque[Future] = deque()  # oldest first, results not yet taken

    @torch.no_grad()
    def submit(self, model: torch.nn.Module) -> None:
        """Queues the validation of ``model``'s current weights."""
        running = [f for f in self._pending if not f.done()]
        if len(running) >= self.max_behind:
            running[0].exception()  # waits; what it raised comes with its result
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()
                   if k not in self.skip}  # fmt: skip
        taken = None
        if self.stream is not None:  # the validation starts after the snapshot
            taken = torch.cuda.Event()
            taken.record()
        self._pending.append(self._pool.submit(self._evaluate, weights, taken))

    @torch.no_grad()
    def _evaluate(
        self, weights: dict[str, torch.Tensor], taken: torch.cuda.Event | None
    ) -> tuple[Evaluation | None, dict[str, float]]:
        start, seconds = time.perf_counter(), {}
        with torch.cuda.stream(self.stream) if self.stream is not None else nullcontext():
            if taken is not None:
                self.stream.wait_event(taken)
            own = self.localizer.model.state_dict()
            for key, value in weights.items():
                own[key].copy_(value)
                if self.stream is not None:  # freed after this stream's copy, not before
                    value.record_stream(self.stream)
            weights.clear()
            evaluation = validation_evaluation(
                self.localizer, self.shard, self.annotations, self.batch_size, seconds
            )
        metrics: dict[str, Any] = headline_of(evaluation)
        metrics["val_seconds"] = time.perf_counter() - start
        metrics |= {f"val_{part}_seconds": value for part, value in seconds.items()}
        return evaluation, metrics

    def done(self) -> int:
        """How many of the oldest validations are done (their results wait in order)."""
        count = 0
        for future in self._pending:
            if not future.done():
                break
            count += 1
        return count

    def wait(self) -> None:
        """Blocks until every submitted validation is done (e.g. before a graph capture)."""
        for future in list(self._pending):
            future.exception()

    def result(self) -> tuple[Evaluation | None, Mapping[str, float]]:
        """The oldest submitted validation's evaluation and headline metrics (with
        ``val_seconds``, its own duration, and ``val_predict_seconds`` /
        ``val_evaluate_seconds``, its parts); waits for it; raises what it raised."""
        if not self._pending:
            raise RuntimeError("no validation was submitted")
        return self._pending.popleft().result()

    def close(self) -> None:
        """Stops: validations not started are dropped, a running one ends first."""
        self._pool.shutdown(wait=True, cancel_futures=True)
