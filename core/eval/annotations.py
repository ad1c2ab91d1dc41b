"""Ground-truth temporal annotations, read from either format the system accepts.

* Official ActivityNet v1.3: ``{"database": {id: {"subset", "duration", "annotations":
  [{"segment": [s, e], "label"}]}}}``, ids without the ``v_`` prefix, an optional top-level
  ``"classes"`` list that fixes the label order.
* MMAction2's ``anet_anno_*.json``: ``{id: {"duration_second", "duration_frame",
  "feature_frame", "annotations": [{"segment", "label"}]}}``, ids with the ``v_`` prefix and
  no subset (one file per subset).

Video ids: the two formats spell the same video ``abc`` and ``v_abc``. :func:`resolve_ids`
maps ids found elsewhere (proposal tables) onto annotation ids: an exact match first, else the
id with ``v_`` stripped, else the id with ``v_`` added.

Shapes: ``N`` = ground-truth segments of one video.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from core import storage

logger = logging.getLogger(__name__)

VIDEO_PREFIX = "v_"
FORMAT_ACTIVITYNET = "activitynet"
FORMAT_MMACTION = "mmaction"


@dataclasses.dataclass
class VideoAnnotation:
    """The ground truth of one video.

    Attributes:
        video_id: The id as spelled in the annotation file.
        duration: Seconds.
        subset: ``training`` / ``validation`` / ``testing``, or ``None`` when the file has none.
        segments_N2: ``[t_start, t_end]`` per action instance, float64 seconds.
        labels: One label name per segment.
        extra: Frame facts when the file gives them (``fps``, ``feature_frame``,
            ``duration_frame``, ``resolution``, ``url``).
    """

    video_id: str
    duration: float
    subset: str | None
    segments_N2: np.ndarray
    labels: list[str]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


class AnnotationError(ValueError):
    """Annotations that cannot serve the request (bad format, unknown subset)."""


class AnnotationFormatError(AnnotationError):
    """The JSON is neither official ActivityNet v1.3 nor MMAction2's anet_anno format."""


Annotations = dict[str, VideoAnnotation]


def detect_format(data: Any) -> str:
    """``"activitynet"`` or ``"mmaction"``; raises :class:`AnnotationFormatError` otherwise."""
    if isinstance(data, Mapping) and isinstance(data.get("database"), Mapping):
        return FORMAT_ACTIVITYNET
    if isinstance(data, Mapping) and data:
        videos = [v for k, v in data.items() if k != "classes"]
        if videos and all(
            isinstance(v, Mapping) and "annotations" in v and "duration_second" in v for v in videos
        ):
            return FORMAT_MMACTION
    raise AnnotationFormatError(
        "annotations are neither official ActivityNet v1.3 "
        '({"database": {id: {"subset", "duration", "annotations"}}}) nor MMAction2 '
        'anet_anno ({id: {"duration_second", "duration_frame", "feature_frame", '
        '"annotations"}})'
    )


def _segments_labels(video_id: str, annos: Iterable[Mapping]) -> tuple[np.ndarray, list[str]]:
    segments, labels = [], []
    for anno in annos:
        start, end = anno["segment"]
        segments.append((float(start), float(end)))
        labels.append(str(anno["label"]))
    segments_N2 = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    if np.any(segments_N2[:, 1] < segments_N2[:, 0]):
        logger.warning("video %s has segments that end before they start", video_id)
    return segments_N2, labels


def _videos(
    items: Iterable[tuple[str, Mapping]], duration_key: str, extra_keys: tuple[str, ...]
) -> Annotations:
    """Annotations from ``(video_id, info)`` pairs of either format (they differ only in the
    name of the duration field and in which frame facts they carry)."""
    out: Annotations = {}
    for video_id, info in items:
        segments_N2, labels = _segments_labels(video_id, info.get("annotations", []))
        out[video_id] = VideoAnnotation(
            video_id=video_id,
            duration=float(info[duration_key]),
            subset=info.get("subset"),
            segments_N2=segments_N2,
            labels=labels,
            extra={k: info[k] for k in extra_keys if k in info},
        )
    return out


def _from_activitynet(data: Mapping) -> Annotations:
    return _videos(data["database"].items(), "duration", ("fps", "resolution", "url"))


def _from_mmaction(data: Mapping) -> Annotations:
    items = ((k, v) for k, v in data.items() if k != "classes")
    return _videos(items, "duration_second", ("fps", "feature_frame", "duration_frame"))


def parse_annotations(data: Any) -> Annotations:
    """Annotations from an already loaded JSON object of either format, keyed by video id.

    A top-level ``"classes"`` list is not part of the result: see
    :func:`load_annotations_and_classes`.
    """
    if detect_format(data) == FORMAT_ACTIVITYNET:
        return _from_activitynet(data)
    return _from_mmaction(data)


def load_annotations_and_classes(uri: str) -> tuple[Annotations, list[str] | None]:
    """Reads annotations from a URI and the file's ``"classes"`` list (``None`` if absent).

    Raises:
        FileNotFoundError: ``uri`` does not exist.
        AnnotationFormatError: the JSON is of neither accepted format.
    """
    if not storage.exists(uri):
        raise FileNotFoundError(f"annotations not found: {uri}")
    data = storage.read_json(uri)
    annos = parse_annotations(data)
    classes = data.get("classes") if isinstance(data, Mapping) else None
    if classes is not None:
        classes = [str(c) for c in classes]
    logger.info("read %d annotated videos from %s", len(annos), uri)
    return annos, classes


def load_annotations(uri: str) -> Annotations:
    """Reads annotations of either format from a URI (see :func:`load_annotations_and_classes`)."""
    return load_annotations_and_classes(uri)[0]


def class_names(annos: Annotations, classes: list[str] | None = None) -> list[str]:
    """The label order: ``classes`` (a file's ``"classes"`` list) if given, else the sorted
    unique labels of ``annos``. Labels found in ``annos`` but missing from ``classes`` are
    appended in sorted order, so every label has an index."""
    found = sorted({label for video in annos.values() for label in video.labels})
    if classes is None:
        return found
    known = set(classes)
    return list(classes) + [label for label in found if label not in known]


def filter_subset(annos: Annotations, subset: str | None) -> Annotations:
    """The videos of one subset; ``None`` keeps all.

    Raises:
        AnnotationError: a subset is asked for but the annotations carry none (MMAction2
            files), or no video belongs to it.
    """
    if subset is None:
        return dict(annos)
    if all(video.subset is None for video in annos.values()):
        raise AnnotationError(
            f"subset {subset!r} asked for, but the annotations have no subsets "
            "(MMAction2 anet_anno files hold one subset each: pass no --subset)"
        )
    out = {k: v for k, v in annos.items() if v.subset == subset}
    if not out:
        found = sorted({str(v.subset) for v in annos.values()})
        raise AnnotationError(f"no video in subset {subset!r}; subsets present: {found}")
    return out


def resolve_ids(ids: Iterable[str], annos: Mapping[str, Any]) -> dict[str, str]:
    """Maps ids (e.g. a proposal table's ``video_id``) onto annotation ids.

    Per id: the id itself when ``annos`` has it, else the id without a leading ``v_``, else
    ``v_`` + id. Ids that match none of these are left out of the result.
    """
    out: dict[str, str] = {}
    for video_id in ids:
        if video_id in annos:
            out[video_id] = video_id
        elif video_id.startswith(VIDEO_PREFIX) and video_id[len(VIDEO_PREFIX) :] in annos:
            out[video_id] = video_id[len(VIDEO_PREFIX) :]
        elif VIDEO_PREFIX + video_id in annos:
            out[video_id] = VIDEO_PREFIX + video_id
    return out
