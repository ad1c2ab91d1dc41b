# Demo / test extract config: small enough for 2 CPU cores in a few minutes.
# A TSN with a ResNet-18 at 64 px (random weights: no download) gives 512-d pooled snippet
# features every 4 frames, rescaled to T=32; a small BMN-with-classification turns them into
# labelled proposals. Its weights come from `--checkpoint` (make demo trains one on the
# synthetic corpus with configs/train/demo.py); without one they are random.
temporal_dim = 32
write_batch_size = 16
seed = 0

sampling = dict(
    clip_len=1,
    clip_interval=4,
    frame_interval=1,
    short_side=64,
    crop_size=64,
    batch_size=32,
    decode_threads=1,
)

extractor = dict(
    model=dict(
        type="Recognizer2D",
        backbone=dict(type="ResNet", pretrained=None, depth=18, norm_eval=False),
        cls_head=dict(
            type="TSNHead",
            num_classes=400,
            in_channels=512,
            spatial_type="avg",
            consensus=dict(type="AvgConsensus", dim=1),
            dropout_ratio=0.4,
            init_std=0.01,
            average_clips="prob",
        ),
        data_preprocessor=dict(
            type="ActionDataPreprocessor",
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            format_shape="NCHW",
        ),
    ),
    checkpoint=None,
    output="pooled",
    batch_size=64,
    num_actors=2,
    num_gpus=0.0,
    dtype="float32",
    videos_per_call=2,
)

localizer = dict(
    model=dict(
        type="BMNwActionCls",
        temporal_dim=32,
        boundary_ratio=0.5,
        num_samples=8,
        num_samples_per_bin=3,
        feat_dim=512,
        soft_nms_alpha=0.4,
        soft_nms_low_threshold=0.5,
        soft_nms_high_threshold=0.9,
        post_process_top_k=100,
        hidden_dim_1d=64,
        hidden_dim_2d=32,
        hidden_dim_3d=64,
        num_action_classes=4,
    ),
    checkpoint=None,
    class_names=[],
    batch_size=16,
    num_actors=1,
    num_gpus=0.0,
    dtype="float32",
)
