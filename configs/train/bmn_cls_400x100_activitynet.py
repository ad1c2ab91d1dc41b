# BMN with an action-classification head on ActivityNet-1.3 features (400-d, 100 positions).
# MMAction2's recipe, bmn_2xb8-400x100-9e_activitynet-feature.py: Adam lr 1e-3, weight decay
# 1e-4, 9 epochs, lr x0.1 after epoch 7, global batch 16 (2 GPUs x 8), grad norm clip 40.
#
# Training on the real ActivityNet features (csv_mean_100) and MMAction2's annotations:
#   python -m jobs.import_features --csv-dir data/ActivityNet/activitynet_feature_cuhk/csv_mean_100 \
#       --annotations data/ActivityNet/anet_anno_full.json --output OUT
#   python -m jobs.train --config configs/train/bmn_cls_400x100_activitynet.py --features OUT \
#       --annotations data/ActivityNet/anet_anno_train.json --output RUN --num-workers 2 --use-gpu \
#       --cfg-options data.val_annotations=data/ActivityNet/anet_anno_val.json
# (anet_anno_*.json carry no subsets; with the official activity_net.v1-3.min.json the
# training / validation subsets are used and val_annotations stays None.)

_base_ = "../_base_/models/bmn_cls_400x100.py"

epochs = 9
batch_size = 16  # global: each of N workers takes 16 / N
# validation batches of 500 videos: Soft-NMS runs its 100 picks once per batch, so few large
# batches keep each epoch's validation (beside the next epoch's training, on the same GPU)
# shorter than that epoch (on an H200, 1,000 videos alone: 0.69 s in batches of 64, 0.33 s
# of 256, 0.18 s of 1,000)
val_batch_size = 500
optim = dict(lr=1e-3, weight_decay=1e-4, grad_clip_max_norm=40.0, milestones=[7], gamma=0.1)
data = dict(train_subset="training", val_subset="validation", val_annotations=None)
scaling = dict(num_workers=2, use_gpu=True, cpus_per_worker=4)
checkpoint = dict(num_to_keep=2, score="AUC")
dtype = "bfloat16"
seed = 0
max_failures = 2
