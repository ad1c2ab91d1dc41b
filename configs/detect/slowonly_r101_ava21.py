# Production detect config: the models and settings of MMAction2's spatio-temporal demo
# (`demo/demo_spatiotemporal_det.py`) as a batch job. Faster R-CNN R50-FPN (COCO) finds
# persons (score > 0.9) on the centre frame of every 8 frames; SlowOnly-R101 8x8 (AVA v2.1)
# scores AVA's actions of each person on the 8 x 8 clip around it, frames at short side 256;
# actions scoring > 0.5 become detections rows. (The demo's default action checkpoint is the
# older `slowonly_omnisource_pretrained_r101_8x8x1_20e_ava_rgb_20201217-16378594.pth`; this is
# the checkpoint that goes with the config.) OpenMMLab checkpoints hold an MMEngine `meta`:
# loading them needs `checkpoint.allow_pickle=True` (trusted files only).
_base_ = ["./_base_/faster_rcnn_r50_fpn_2x_coco.py", "./_base_/slowonly_r101_ava21.py"]

sampling = dict(
    short_side=256, predict_stepsize=8, clip_len=8, frame_interval=8, decode_threads=1, num_cpus=1.0
)

detector = dict(score_thr=0.9, batch_size=8, num_actors=2, num_gpus=0.25, num_cpus=1.0)

action = dict(
    score_thr=0.5, channel_order="rgb", batch_size=8, num_actors=2, num_gpus=0.25, num_cpus=1.0
)

render = dict(video_ids=[], max_videos=0, output_stepsize=4, output_fps=6, max_labels=5)

write_batch_size = 16
seed = 0
