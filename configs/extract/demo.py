# Demo / test extract config: the production TSN layout shrunk for 2 CPU cores and a few
# minutes. A TSN with a ResNet-18 at 64 px (random weights: no download) gives 512-d pooled
# snippet features every 4 frames, rescaled to T=32; the tiny BMN-with-classification turns
# them into labelled proposals. Its weights come from `--checkpoint` (make demo trains one on
# the synthetic corpus with configs/train/demo.py); without one they are random.
_base_ = ["../_base_/models/tsn_r50_kinetics400.py", "../_base_/models/bmn_cls_tiny.py"]

temporal_dim = 32
write_batch_size = 16
seed = 0

sampling = dict(
    clip_len=1,
    clip_interval=4,
    frame_interval=1,
    short_side=64,
    crop_size=64,
    batch_size=32,
    decode_threads=1,
)

extractor = dict(
    model=dict(backbone=dict(depth=18), cls_head=dict(in_channels=512)),
    checkpoint=None,
    output="pooled",
    batch_size=64,
    num_actors=2,
    num_gpus=0.0,
    dtype="float32",
    videos_per_call=2,
)

# a random localizer needs a class count; a checkpoint brings its own
model = dict(num_action_classes=4)

localizer = dict(checkpoint=None, class_names=[], batch_size=16, num_gpus=0.0, dtype="float32")
