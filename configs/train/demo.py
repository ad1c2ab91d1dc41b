# Training the tiny localizer (configs/_base_/models/bmn_cls_tiny.py) for the demo and the tests:
# 40 epochs of ~50 videos on 2 CPUs with 2 workers (with 12 epochs, ~70 optimizer steps, the
# action head had not started to separate the classes). feat_dim and temporal_dim match
# configs/extract/demo.py (64-d stage-1 TSN-R18 features at T=64); for other features
# override them, e.g.
#   --cfg-options model.feat_dim=400 model.temporal_dim=100
# num_action_classes=None takes the number of classes from the annotations.

_base_ = "../_base_/models/bmn_cls_tiny.py"

epochs = 40
batch_size = 8  # global
val_batch_size = 32
optim = dict(lr=2e-3, weight_decay=1e-4, grad_clip_max_norm=40.0, milestones=[30], gamma=0.1)
scaling = dict(num_workers=2, use_gpu=False, cpus_per_worker=1)
checkpoint = dict(num_to_keep=1, score="mAP")  # best.pth: the best labelled proposals
dtype = "float32"
seed = 0
max_failures = 1
