# A tiny BMN-with-classification for the demo and the tests, fast on 2 CPU cores: 64-d
# features (configs/extract/demo.py) at 64 positions, narrow hidden layers, 8 samples per proposal.
# `num_action_classes=None` takes the number of classes from the annotations (jobs.train) or
# the checkpoint (jobs.extract --checkpoint). The `span` head classifies each proposal from
# its span's features against the rest of the video (core/models/heads.py); `pointwise` is
# the lecture's per-position 1x1 head.
model = dict(
    type="BMNwActionCls",
    temporal_dim=64,
    boundary_ratio=0.5,
    num_samples=8,
    num_samples_per_bin=3,
    feat_dim=64,
    soft_nms_alpha=0.4,
    soft_nms_low_threshold=0.5,
    soft_nms_high_threshold=0.9,
    post_process_top_k=100,
    hidden_dim_1d=64,
    hidden_dim_2d=32,
    hidden_dim_3d=64,
    num_action_classes=None,
    cls_head="span",
    cls_dropout=0.5,
)
