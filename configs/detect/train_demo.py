# Trains the two models of the demo detect config (configs/detect/demo.py) on a people corpus
# (`jobs.make_corpus --spatiotemporal`) on 2 CPU cores in a few minutes. Bounded by steps, not
# seconds, so that the models and the demo's figures are the same on any machine (max_seconds is
# only a backstop):
#   python -m jobs.train_detect --config configs/detect/train_demo.py \
#       --input CORPUS/manifest.csv --annotations CORPUS/ava_annotations.csv --output OUT
# then `jobs.detect --config configs/detect/demo.py --cfg-options
# detector.checkpoint=OUT/detector.pth action.checkpoint=OUT/action.pth`.
detect_config = "{{ fileDirname }}/demo.py"

# mmdet's Faster R-CNN training settings (its faster-rcnn_r50_fpn config), fewer samples
detector = dict(
    iterations=200,
    batch_size=4,
    lr=2e-3,
    weight_decay=1e-4,
    warmup=25,
    max_seconds=1800,
    log_every=25,
    train_cfg=dict(
        rpn=dict(
            assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                          match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type="RandomSampler", num=128, pos_fraction=0.5, neg_pos_ub=-1,
                         add_gt_as_proposals=False),
            allowed_border=-1,
            pos_weight=-1,
            debug=False,
        ),
        rpn_proposal=dict(nms_pre=500, max_per_img=200, nms=dict(type="nms", iou_threshold=0.7),
                          min_bbox_size=0),
        rcnn=dict(
            assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                          match_low_quality=False, ignore_iof_thr=-1),
            sampler=dict(type="RandomSampler", num=128, pos_fraction=0.25, neg_pos_ub=-1,
                         add_gt_as_proposals=True),
            pos_weight=-1,
            debug=False,
        ),
    ),
)  # fmt: skip

# the AVA settings of the action model (its train_cfg: ground truth and proposals overlapping
# it by 0.9 are positives) from the demo config
action = dict(
    iterations=150,
    batch_size=8,
    lr=2e-3,
    weight_decay=1e-4,
    warmup=20,
    max_seconds=1800,
    log_every=25,
    jittered_proposals=2,
    jitter=0.03,
)

seed = 0
num_threads = 1
