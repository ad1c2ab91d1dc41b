# SlowOnly-R50 8x8 trained on Kinetics-400 as the snippet feature extractor: mmaction2 1.2.0's
# `_base_/models/slowonly_r50.py` architecture (`pretrained=None`: the checkpoint carries every
# weight), the checkpoint of its
# `slowonly_imagenet-pretrained-r50_8xb16-8x8x1-steplr-150e_kinetics400-rgb` config. Its pooled
# 2048-d backbone features per clip are the stronger ActivityNet features.
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
)
