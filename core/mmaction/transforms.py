"""Pipeline transforms for MMAction2's ActivityNet pipelines, registered in its TRANSFORMS.

MMAction2's ActivityNet pipeline (``LoadLocalizationFeature`` → ``GenerateLocalizationLabels``
→ ``PackLocalizationInputs``) packs each video's segments (``gt_bbox``) but no classes;
:class:`GenerateSegmentLabels` adds them for BMNwActionCls's action head:

.. code-block:: python

    train_pipeline = [
        dict(type='LoadLocalizationFeature'),
        dict(type='GenerateLocalizationLabels'),
        dict(type='GenerateSegmentLabels', classes='path/to/label_map.txt'),
        dict(type='PackLocalizationInputs', keys=('gt_bbox', 'gt_labels'),
             meta_keys=('video_name',)),
    ]

Shapes: N = annotated segments of one video.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from mmaction.registry import TRANSFORMS
from mmcv.transforms import BaseTransform
from mmengine.fileio import list_from_file


@TRANSFORMS.register_module()
class GenerateSegmentLabels(BaseTransform):
    """Adds ``gt_labels``: the class id of each annotated segment, in ``gt_bbox``'s order.

    Required key: ``annotations`` (MMAction2's ``anet_anno_*.json`` entries, each with a
    ``label`` name). Added key: ``gt_labels``, int64 (N,). Put it after
    ``GenerateLocalizationLabels`` and add ``'gt_labels'`` to ``PackLocalizationInputs``'s
    ``keys``; the model's ``num_action_classes`` must equal the number of classes.

    Args:
        classes: the class names in id order, or a text file with one name per line (the
            layout of MMAction2's ``tools/data/activitynet/label_map.txt``), read through
            MMEngine's file backends.
    """

    def __init__(self, classes: str | Sequence[str]) -> None:
        self.source = classes if isinstance(classes, str) else "the classes given"
        names = list_from_file(classes) if isinstance(classes, str) else list(classes)
        names = [str(name).strip() for name in names if str(name).strip()]
        if not names:
            raise ValueError(f"GenerateSegmentLabels: no class names in {self.source}")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"GenerateSegmentLabels: duplicate classes {duplicates}")
        self.classes = names
        self.class_ids = {name: i for i, name in enumerate(names)}

    def transform(self, results: dict) -> dict:
        labels = [segment["label"] for segment in results["annotations"]]
        unknown = sorted(set(labels) - set(self.class_ids))
        if unknown:
            raise ValueError(
                f"GenerateSegmentLabels: {results.get('video_name', 'a video')} has label(s) "
                f"{unknown} that are not among the {len(self.classes)} classes of {self.source}"
            )
        results["gt_labels"] = np.array([self.class_ids[x] for x in labels], dtype=np.int64)
        return results

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(classes={self.source!r}, {len(self.classes)} names)"
