# BMN with an action-classification head on ActivityNet-1.3 features: 400-d features at 100
# positions (MMAction2's `_base_/models/bmn_400x100.py`), a 200-class head. Both jobs read the
# localizer from `model` (jobs.train trains it, jobs.extract runs it).
model = dict(
    type="BMNwActionCls",
    temporal_dim=100,
    boundary_ratio=0.5,
    num_samples=32,
    num_samples_per_bin=3,
    feat_dim=400,
    soft_nms_alpha=0.4,
    soft_nms_low_threshold=0.5,
    soft_nms_high_threshold=0.9,
    post_process_top_k=100,
    num_action_classes=200,
    cls_head="span",  # a proposal-level classifier; "pointwise" is the lecture's head
    cls_dropout=0.5,
)
