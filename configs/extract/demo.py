# Demo / test extract config: the production TSN layout shrunk for 2 CPU cores and a few
# minutes. A TSN with the first stage of a ResNet-18 at 64 px (random weights: no download),
# max-pooled over space (`pooled_max`), gives 64-d snippet features every 2 frames, rescaled
# to T=64; the tiny BMN-with-classification turns them into labelled proposals. Its weights
# come from `--checkpoint` (make demo trains one on the synthetic corpus with
# configs/train/demo.py); without one they are random.
#
# Why this layout (measured on two synthetic corpora, 60 videos, 5 classes): a random
# network's deeper stages and spatial averages wash out what tells the classes apart, a small
# shape's colour and form. A linear classifier of the ground-truth segments of held-out videos
# reaches 95-100 % on these features and 60-75 % on the full ResNet-18's 512-d averages.
# T=64 lifts what a proposal grid can reach at all (mean over tIoU 0.5:0.95 of the best grid
# proposal per segment) from 0.90-0.95 at T=32 to 0.975-0.995.
_base_ = ["../_base_/models/tsn_r50_kinetics400.py", "../_base_/models/bmn_cls_tiny.py"]

temporal_dim = 64
write_batch_size = 16
seed = 0

sampling = dict(
    clip_len=1,
    clip_interval=2,
    frame_interval=1,
    short_side=64,
    crop_size=64,
    batch_size=32,
    decode_threads=1,
)

extractor = dict(
    model=dict(
        backbone=dict(depth=18, num_stages=1, out_indices=(0,), strides=(1,), dilations=(1,)),
        cls_head=dict(in_channels=64),
    ),
    checkpoint=None,
    output="pooled_max",
    batch_size=64,
    num_actors=2,
    num_gpus=0.0,
    dtype="float32",
    videos_per_call=2,
)

# a random localizer needs a class count; a checkpoint brings its own
model = dict(num_action_classes=4)

localizer = dict(checkpoint=None, class_names=[], batch_size=16, num_gpus=0.0, dtype="float32")
