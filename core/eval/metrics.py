"""The evaluation entry: a proposals table + ground truth -> the ``metrics.json`` dict.

``metrics.json`` (what analysts and the README rely on; change it only with a migration
note): ``AR@1``, ``AR@5``, ``AR@10``, ``AR@100``
(fractions) and ``AUC`` (percent) as MMAction2's ANetMetric prints them; with labels also
``mAP`` (mean over tIoU 0.5:0.05:0.95), ``mAP@0.5``, ``mAP@0.75``, ``mAP@0.95`` (fractions);
plus ``num_videos``, ``num_proposals`` and a few counts that explain them.

Only the videos of the annotations (or of the chosen subset) are evaluated: proposals of other
videos are ignored, and a listed video without proposals recalls nothing. Proposal
``video_id`` values are matched to annotation ids by :func:`core.eval.annotations.resolve_ids`
(``abc`` and ``v_abc`` are the same video).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from core import storage
from core.eval.annotations import (
    Annotations,
    class_names,
    filter_subset,
    load_annotations_and_classes,
    resolve_ids,
)
from core.eval.confusion import ConfusionMatrix, confusion_matrix
from core.eval.detection import DetectionResult, average_precision_flat
from core.eval.proposals import TIOU_THRESHOLDS, ARANResult, average_recall_flat
from core.io.tables import RUN_ID, VIDEO_ID

logger = logging.getLogger(__name__)

PROPOSAL_COLUMNS = (VIDEO_ID, "t_start", "t_end", "score")
DETECTION_COLUMNS = ("label", "label_score")
MAX_AVG_PROPOSALS = 100


class EvaluationInputError(ValueError):
    """Inputs that cannot be evaluated (no Parquet files, no matching videos, bad columns)."""


@dataclasses.dataclass
class Evaluation:
    """Everything one evaluation computed.

    Attributes:
        metrics: The ``metrics.json`` dict.
        ar_an: The AR-AN curve (for the plot).
        detection: Per-class AP, ``None`` when the table has no labels.
        confusion: Ground-truth class against the label that found it, ``None`` without labels.
        annotations: The evaluated videos' ground truth.
        proposals: The evaluated rows, ``video_id`` spelled as in ``annotations``.
        class_names: The label order of the per-class results.
    """

    metrics: dict
    ar_an: ARANResult
    detection: DetectionResult | None
    confusion: ConfusionMatrix | None = None
    annotations: Annotations = dataclasses.field(default_factory=dict)
    proposals: pd.DataFrame | None = None
    class_names: list[str] = dataclasses.field(default_factory=list)


def read_proposals(uri: str, run_id: str | None = None) -> pa.Table:
    """Reads a proposals Parquet dataset: a file, or a directory of ``**/*.parquet``.

    Hive partition keys (``key=value`` folders) become string columns, or take the type of a
    file column of the same name. Files whose names start with ``.`` or ``_`` are skipped.

    Args:
        uri: Dataset root or file (any URI that :mod:`core.storage` opens).
        run_id: Keep only this run's rows (needs a ``run_id`` column or partition key).

    Raises:
        FileNotFoundError: ``uri`` does not exist or holds no Parquet file.
    """
    if not storage.exists(uri):
        raise FileNotFoundError(f"proposals not found: {uri}")
    fs, path = storage.pyarrow_filesystem(uri)
    files = _parquet_files(fs, path)
    if not files:
        raise FileNotFoundError(f"no Parquet files under {uri}")
    keys: dict[str, None] = {}
    for f in files:
        for part in f[len(path) :].split("/")[:-1]:
            if "=" in part:
                keys.setdefault(part.split("=", 1)[0])
    schema = pads.dataset(files[0], filesystem=fs, format="parquet").schema
    fields = [schema.field(k) if k in schema.names else pa.field(k, pa.string()) for k in keys]
    partitioning = pads.partitioning(pa.schema(fields), flavor="hive") if fields else None
    dataset = pads.dataset(
        files, filesystem=fs, format="parquet", partitioning=partitioning, partition_base_dir=path
    )
    filter_ = None
    if run_id is not None:
        if RUN_ID not in dataset.schema.names:
            raise EvaluationInputError(f"--run-id given but {uri} has no {RUN_ID} column")
        filter_ = pads.field(RUN_ID) == run_id
    table = dataset.to_table(filter=filter_)
    logger.info("read %d proposals from %d files under %s", table.num_rows, len(files), uri)
    return table


def _parquet_files(fs: pafs.FileSystem, path: str) -> list[str]:
    """``path`` itself if it is a file, else every ``*.parquet`` below it, sorted, skipping
    names that start with ``.`` or ``_`` (Spark / Hadoop markers, temporary files)."""
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        return [path]
    found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    return sorted(
        f.path
        for f in found
        if f.type == pafs.FileType.File
        and f.path.endswith(".parquet")
        and not any(part[:1] in (".", "_") for part in f.path[len(path) :].split("/") if part)
    )


def _as_frame(table: pa.Table | pd.DataFrame) -> pd.DataFrame:
    names = table.column_names if isinstance(table, pa.Table) else list(table.columns)
    columns = [c for c in (*PROPOSAL_COLUMNS, *DETECTION_COLUMNS, RUN_ID) if c in names]
    missing = [c for c in PROPOSAL_COLUMNS if c not in columns]
    if missing:
        raise EvaluationInputError(f"proposals lack columns {missing}")
    if isinstance(table, pa.Table):
        return table.select(columns).to_pandas()
    return table[columns]


def _video_codes(frame: pd.DataFrame, annos: Annotations) -> np.ndarray:
    """Index of each row's video in ``annos`` (-1: not an evaluated video)."""
    codes_M, uniques = pd.factorize(frame[VIDEO_ID].astype(str))
    matched = resolve_ids(uniques, annos)
    position = {video_id: i for i, video_id in enumerate(annos)}
    video_U = np.array([position.get(matched.get(u), -1) for u in uniques], dtype=np.int64)
    video_M = video_U[codes_M] if len(uniques) else np.zeros(0, dtype=np.int64)
    if len(uniques) and not np.any(video_U >= 0):
        raise EvaluationInputError(
            f"no proposal video_id matches an annotated video (proposals: {list(uniques[:3])}"
            f"..., annotations: {list(annos)[:3]}...)"
        )
    ignored = int(np.sum(video_U < 0))
    if ignored:
        logger.info("ignoring proposals of %d videos that are not evaluated", ignored)
    return video_M


def _ground_truth(annos: Annotations) -> tuple[np.ndarray, np.ndarray, list[str]]:
    videos = list(annos.values())
    gt_video_N = np.repeat(np.arange(len(videos)), [len(v.labels) for v in videos])
    segments = [v.segments_N2 for v in videos]
    gt_segments_N2 = np.concatenate(segments) if segments else np.zeros((0, 2))
    return gt_video_N, gt_segments_N2, [label for v in videos for label in v.labels]


def _detection(
    frame: pd.DataFrame,
    video_M: np.ndarray,
    gt: tuple[np.ndarray, np.ndarray, list[str]],
    names: list[str],
) -> tuple[DetectionResult, ConfusionMatrix]:
    gt_video_N, gt_segments_N2, gt_labels = gt
    class_of = {name: i for i, name in enumerate(names)}
    gt_class_N = np.array([class_of[label] for label in gt_labels], dtype=np.int64)
    codes_M, uniques = pd.factorize(frame["label"].astype(str))
    class_U = np.array([class_of.get(u, -1) for u in uniques], dtype=np.int64)
    det_class_M = class_U[codes_M] if len(uniques) else np.zeros(0, dtype=np.int64)
    keep_M = det_class_M >= 0
    if not keep_M.all():
        logger.warning("%d detections have labels outside the annotations", int((~keep_M).sum()))
    segments_M2 = frame[["t_start", "t_end"]].to_numpy(np.float64)
    confusion = confusion_matrix(
        gt_video_N, gt_class_N, gt_segments_N2, video_M, det_class_M, segments_M2,
        frame["score"].to_numpy(np.float64), names,
    )  # fmt: skip
    ap_TC = average_precision_flat(
        gt_video_N=gt_video_N,
        gt_class_N=gt_class_N,
        gt_segments_N2=gt_segments_N2,
        det_video_M=video_M[keep_M],
        det_class_M=det_class_M[keep_M],
        det_segments_M2=segments_M2[keep_M],
        det_scores_M=frame["label_score"].to_numpy(np.float64)[keep_M],
        num_classes=len(names),
    )
    evaluated_C = np.bincount(gt_class_N, minlength=len(names)) > 0
    detection = DetectionResult(
        ap_TC=ap_TC[:, evaluated_C],
        class_names=[n for n, keep in zip(names, evaluated_C, strict=True) if keep],
        tiou_thresholds_T=TIOU_THRESHOLDS,
        num_detections=int(keep_M.sum()),
    )
    return detection, confusion


def evaluate_full(
    proposals_table: pa.Table | pd.DataFrame,
    annotations: Annotations | str,
    subset: str | None = None,
    classes: list[str] | None = None,
    max_avg_proposals: float = MAX_AVG_PROPOSALS,
) -> Evaluation:
    """AR@AN (and detection mAP when the table has ``label`` / ``label_score``).

    Args:
        proposals_table: Rows with ``video_id``, ``t_start``, ``t_end``, ``score`` and
            optionally ``label``, ``label_score`` (the proposals schema).
        annotations: Parsed annotations, or a URI of either accepted format.
        subset: Evaluate only this subset's videos (``None``: all).
        classes: Label order of the per-class output (a file's ``"classes"`` list).
        max_avg_proposals: End of the AR-AN curve, proposals per video (MMAction2: 100).

    Raises:
        EvaluationInputError: missing columns, no ground truth, or no matching video.
    """
    if isinstance(annotations, str):
        annotations, file_classes = load_annotations_and_classes(annotations)
        classes = classes or file_classes
    annos = filter_subset(annotations, subset)
    frame = _as_frame(proposals_table)
    if RUN_ID in frame and frame[RUN_ID].nunique() > 1:
        logger.warning("proposals of %d runs evaluated together", frame[RUN_ID].nunique())
    video_M = _video_codes(frame, annos)
    keep_M = video_M >= 0
    frame, video_M = frame[keep_M], video_M[keep_M]
    gt = _ground_truth(annos)
    empty = sum(1 for video in annos.values() if not video.labels)
    if empty:
        logger.info("%d of %d evaluated videos have no ground truth", empty, len(annos))
    if len(gt[0]) == 0:
        raise EvaluationInputError("the evaluated videos have no ground-truth segments")
    if len(frame) == 0:
        raise EvaluationInputError("no proposals for the evaluated videos")
    ar_an = average_recall_flat(
        gt_video_N=gt[0],
        gt_segments_N2=gt[1],
        prop_video_M=video_M,
        prop_segments_M2=frame[["t_start", "t_end"]].to_numpy(np.float64),
        prop_scores_M=frame["score"].to_numpy(np.float64),
        num_videos=len(annos),
        max_avg_proposals=max_avg_proposals,
    )
    detection = confusion = None
    names = class_names(annos, classes)
    if all(c in frame for c in DETECTION_COLUMNS):
        detection, confusion = _detection(frame, video_M, gt, names)
    metrics = _metrics(ar_an, detection, video_M, subset)
    if confusion is not None:
        metrics["confusion_matrix"] = confusion.to_json()
    metrics["max_avg_proposals"] = max_avg_proposals
    evaluated = frame.assign(**{VIDEO_ID: np.asarray(list(annos), dtype=object)[video_M]})
    return Evaluation(metrics, ar_an, detection, confusion, annos, evaluated, names)


def _metrics(
    ar_an: ARANResult, detection: DetectionResult | None, video_M: np.ndarray, subset: str | None
) -> dict:
    metrics: dict = ar_an.metrics()
    if detection is not None:
        metrics.update(detection.metrics())
        metrics["per_class_AP"] = detection.per_class_ap()
        metrics["per_class_AP@0.5"] = detection.per_class_ap_at(0.5)
    metrics.update(
        num_videos=ar_an.num_videos,
        num_proposals=ar_an.num_proposals,
        num_videos_with_proposals=int(len(np.unique(video_M))),
        num_ground_truth=ar_an.num_ground_truth,
        tiou_thresholds=[round(float(t), 4) for t in ar_an.tiou_thresholds_T],
        subset=subset,
    )
    return metrics


def evaluate(
    proposals_table: pa.Table | pd.DataFrame,
    annotations: Annotations | str,
    subset: str | None = None,
) -> dict:
    """The ``metrics.json`` dict (see :func:`evaluate_full`)."""
    return evaluate_full(proposals_table, annotations, subset=subset).metrics


def format_summary(metrics: dict) -> str:
    """A small fixed-width table of the headline metrics."""
    rows = [(k, metrics[k]) for k in ("AR@1", "AR@5", "AR@10", "AR@100") if k in metrics]
    rows.append(("AUC (%)", metrics["AUC"]))
    rows += [(k, metrics[k]) for k in ("mAP", "mAP@0.5", "mAP@0.75", "mAP@0.95") if k in metrics]
    lines = [f"{'metric':<10}{'value':>10}", "-" * 20]
    lines += [f"{name:<10}{value:>10.4f}" for name, value in rows]
    lines.append(f"videos {metrics['num_videos']}, proposals {metrics['num_proposals']}")
    return "\n".join(lines)
