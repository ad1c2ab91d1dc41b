# Production extract config, the stronger option: SlowOnly-R50 8×8 Kinetics-400, pooled
# 2048-d backbone features per 16-frame-stride snippet (8 frames, 8 apart), rescaled to
# T=100, then BMN with a 200-class action head (feat_dim 2048). Standalone (no _base_): the
# recognizer differs from TSN's in every part.
temporal_dim = 100
write_batch_size = 64
seed = 0

sampling = dict(
    clip_len=8,
    clip_interval=16,
    frame_interval=8,
    short_side=256,
    crop_size=224,
    batch_size=16,
    decode_threads=1,
)

extractor = dict(
    model=dict(
        type="Recognizer3D",
        backbone=dict(
            type="ResNet3dSlowOnly",
            depth=50,
            pretrained=None,
            lateral=False,
            conv1_kernel=(1, 7, 7),
            conv1_stride_t=1,
            pool1_stride_t=1,
            inflate=(0, 0, 1, 1),
            norm_eval=False,
        ),
        cls_head=dict(
            type="I3DHead",
            in_channels=2048,
            num_classes=400,
            spatial_type="avg",
            dropout_ratio=0.5,
            average_clips="prob",
        ),
        data_preprocessor=dict(
            type="ActionDataPreprocessor",
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            format_shape="NCTHW",
        ),
    ),
    checkpoint=(
        "https://download.openmmlab.com/mmaction/v1.0/recognition/slowonly/"
        "slowonly_imagenet-pretrained-r50_8xb16-8x8x1-steplr-150e_kinetics400-rgb/"
        "slowonly_imagenet-pretrained-r50_8xb16-8x8x1-steplr-150e_kinetics400-rgb_"
        "20220901-df42dc84.pth"
    ),
    output="pooled",
    batch_size=32,
    num_actors=14,
    num_gpus=0.07,
    dtype="bfloat16",
    videos_per_call=2,
)

localizer = dict(
    model=dict(
        type="BMNwActionCls",
        temporal_dim=100,
        boundary_ratio=0.5,
        num_samples=32,
        num_samples_per_bin=3,
        feat_dim=2048,
        soft_nms_alpha=0.4,
        soft_nms_low_threshold=0.5,
        soft_nms_high_threshold=0.9,
        post_process_top_k=100,
        num_action_classes=200,
    ),
    checkpoint=None,
    class_names=[],
    batch_size=512,
    num_actors=1,
    num_gpus=0.02,
    # tf32 keeps AR@100 within 4e-5 of float32 at 2,840 videos/s on an H100; bf16 is faster
    # (3,750) but moved AR@100 by 0.0098 (benchmarks/results/bmn_inference_h100.json)
    dtype="tf32",
)
