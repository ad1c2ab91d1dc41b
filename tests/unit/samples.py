"""Small inputs that several unit tests share: a tiny BMN-with-classification model and a
two-video evaluation (annotations and proposals) for the report and figure tests."""

from __future__ import annotations

import pandas as pd

C, T, K = 16, 16, 3  # channels, temporal positions, action classes of the tiny model

TINY_MODEL = dict(
    type="BMNwActionCls", temporal_dim=T, boundary_ratio=0.5, num_samples=8,
    num_samples_per_bin=3, feat_dim=C, soft_nms_alpha=0.4, soft_nms_low_threshold=0.5,
    soft_nms_high_threshold=0.9, post_process_top_k=16, hidden_dim_1d=32, hidden_dim_2d=16,
    hidden_dim_3d=32, num_action_classes=K,
)  # fmt: skip


def two_video_evaluation():
    """Classes a and b over two validation videos: ``a`` found by its top proposal, ``b``
    once found and once labelled ``a`` (per-class AP@0.5: a 1.0, b 0.5)."""
    from core.eval.annotations import parse_annotations
    from core.eval.metrics import evaluate_full

    annos = parse_annotations({"database": {
        "v0": {"subset": "validation", "duration": 40.0, "annotations": [
            {"segment": [0.0, 10.0], "label": "a"}, {"segment": [20.0, 30.0], "label": "b"}]},
        "v1": {"subset": "validation", "duration": 20.0, "annotations": [
            {"segment": [5.0, 15.0], "label": "b"}]},
    }})  # fmt: skip
    frame = pd.DataFrame({
        "video_id": ["v0", "v0", "v1", "v1"], "t_start": [0.0, 20.0, 5.0, 0.0],
        "t_end": [10.0, 30.0, 15.0, 2.0], "score": [0.9, 0.8, 0.7, 0.1],
        "label": ["a", "b", "a", "b"], "label_score": [0.9, 0.8, 0.7, 0.1],
    })  # fmt: skip
    return evaluate_full(frame, annos, classes=["a", "b"])
