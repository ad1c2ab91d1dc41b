# TSN-R50 trained on Kinetics-400 as the snippet feature extractor: mmaction2 1.2.0's
# `_base_/models/tsn_r50.py` architecture (`pretrained=None`: the checkpoint carries every
# weight), the checkpoint of its `tsn_imagenet-pretrained-r50_8xb32-1x1x8-100e_kinetics400-rgb`
# config (metafile.yml `Weights:`). Its 400 class scores per snippet are the ActivityNet
# "400 x 100" features (csv_mean_100).
extractor = dict(
    model=dict(
        type="Recognizer2D",
        backbone=dict(type="ResNet", pretrained=None, depth=50, norm_eval=False),
        cls_head=dict(
            type="TSNHead",
            num_classes=400,
            in_channels=2048,
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
    checkpoint=(
        "https://download.openmmlab.com/mmaction/v1.0/recognition/tsn/"
        "tsn_imagenet-pretrained-r50_8xb32-1x1x8-100e_kinetics400-rgb/"
        "tsn_imagenet-pretrained-r50_8xb32-1x1x8-100e_kinetics400-rgb_20220906-2692d16c.pth"
    ),
    output="scores",
)
