"""Evaluation: ground truth, AR@AN, detection mAP, the AR-AN plot and the metrics.json entry.

* :mod:`core.eval.annotations` reads either annotation format.
* :mod:`core.eval.proposals` AR@AN (MMAction2's ``average_recall_at_avg_proposals``).
* :mod:`core.eval.detection` detection mAP (MMAction2's ``ActivityNetLocalization``).
* :mod:`core.eval.plots` the AR-AN curve PNG.
* :mod:`core.eval.metrics` ``evaluate(table, annotations) -> metrics.json dict``.

All metrics equal MMAction2 1.2.0's on the same inputs and are vectorised numpy.
"""

from core.eval.annotations import (
    AnnotationError,
    AnnotationFormatError,
    VideoAnnotation,
    class_names,
    filter_subset,
    load_annotations,
    load_annotations_and_classes,
    resolve_ids,
)
from core.eval.detection import DetectionResult, activitynet_detection_map
from core.eval.metrics import Evaluation, EvaluationInputError, evaluate, evaluate_full
from core.eval.proposals import ARANResult, average_recall_at_avg_proposals

__all__ = [
    "ARANResult",
    "AnnotationError",
    "AnnotationFormatError",
    "DetectionResult",
    "Evaluation",
    "EvaluationInputError",
    "VideoAnnotation",
    "activitynet_detection_map",
    "average_recall_at_avg_proposals",
    "class_names",
    "evaluate",
    "evaluate_full",
    "filter_subset",
    "load_annotations",
    "load_annotations_and_classes",
    "resolve_ids",
]
