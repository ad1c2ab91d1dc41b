# The action model of MMAction2's spatio-temporal demo: SlowOnly-R101 8x8 (Kinetics-400
# pretrained) with an AVA RoI head, trained on AVA v2.1 (mmaction2 1.2.0's
# `configs/detection/slowonly/slowonly_kinetics400-pretrained-r101_8xb16-8x8x1-20e_ava21-rgb.py`,
# model part; the checkpoint of its metafile entry). 81 outputs: background + AVA's 80 action
# ids, of which the label map's 60 are reported.
action = dict(
    model=dict(
        type="FastRCNN",
        _scope_="mmdet",
        backbone=dict(
            type="mmaction.ResNet3dSlowOnly",
            depth=101,
            pretrained=None,
            pretrained2d=False,
            lateral=False,
            num_stages=4,
            conv1_kernel=(1, 7, 7),
            conv1_stride_t=1,
            pool1_stride_t=1,
            spatial_strides=(1, 2, 2, 1),
        ),
        roi_head=dict(
            type="AVARoIHead",
            bbox_roi_extractor=dict(
                type="SingleRoIExtractor3D",
                roi_layer_type="RoIAlign",
                output_size=8,
                with_temporal_pool=True,
            ),
            bbox_head=dict(
                type="BBoxHeadAVA",
                background_class=True,
                in_channels=2048,
                num_classes=81,
                multilabel=True,
                dropout_ratio=0.5,
            ),
        ),
        data_preprocessor=dict(
            type="mmaction.ActionDataPreprocessor",
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            format_shape="NCTHW",
        ),
        train_cfg=dict(
            rcnn=dict(
                assigner=dict(
                    type="MaxIoUAssignerAVA", pos_iou_thr=0.9, neg_iou_thr=0.9, min_pos_iou=0.9
                ),
                sampler=dict(
                    type="RandomSampler",
                    num=32,
                    pos_fraction=1,
                    neg_pos_ub=-1,
                    add_gt_as_proposals=True,
                ),
                pos_weight=1.0,
            )
        ),
        test_cfg=dict(rcnn=None),
    ),
    checkpoint=(
        "https://download.openmmlab.com/mmaction/v1.0/detection/slowonly/"
        "slowonly_kinetics400-pretrained-r101_8xb16-8x8x1-20e_ava21-rgb/"
        "slowonly_kinetics400-pretrained-r101_8xb16-8x8x1-20e_ava21-rgb_20220906-43f16877.pth"
    ),
    label_map="{{ fileDirname }}/../ava_v2.1_label_map.txt",
)
