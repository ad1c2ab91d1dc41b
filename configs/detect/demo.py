# Demo / test detect config for 2 CPU cores: the production pipeline with tiny models of the
# same kinds (mmdet Faster R-CNN with a ResNet-18 of 16 base channels; MMAction2 FastRCNN with
# a SlowOnly ResNet-18 of 8 base channels), small frames and 4 x 4 clips. Without checkpoints
# (`detector.checkpoint`, `action.checkpoint`) the weights are random (seeded): the job's
# mechanics, not its accuracy; `jobs.train_detect --config configs/detect/train_demo.py` trains
# both on a people corpus (`make detect-models`).
_base_ = ["./_base_/faster_rcnn_r50_fpn_2x_coco.py", "./_base_/slowonly_r101_ava21.py"]

# 2 cores: one decoding task, the two model actors half a CPU each
sampling = dict(
    short_side=96, predict_stepsize=8, clip_len=4, frame_interval=4, decode_threads=1, num_cpus=1.0
)

detector = dict(
    model=dict(
        backbone=dict(depth=18, base_channels=16, frozen_stages=-1, norm_eval=False),
        neck=dict(in_channels=[16, 32, 64, 128], out_channels=32),
        rpn_head=dict(in_channels=32, feat_channels=32),
        roi_head=dict(
            bbox_roi_extractor=dict(out_channels=32),
            bbox_head=dict(in_channels=32, fc_out_channels=64, num_classes=1),
        ),
        test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100), rcnn=dict(max_per_img=20)),
    ),
    checkpoint=None,
    test_scale=(192, 192),
    score_thr=0.5,
    batch_size=4,
    num_actors=1,
    num_cpus=0.5,
)

action = dict(
    model=dict(
        backbone=dict(depth=18, base_channels=8),
        roi_head=dict(bbox_head=dict(in_channels=64, dropout_ratio=0.0)),
    ),
    checkpoint=None,
    score_thr=0.5,
    batch_size=8,
    num_actors=1,
    num_cpus=0.5,
)

render = dict(video_ids=[], max_videos=1, output_stepsize=4, output_fps=6, max_labels=3)

write_batch_size = 8
seed = 0
