# Demo / test extract config: the production TSN layout shrunk for 2 CPU cores and a few
# minutes. A TSN with a ResNet-18 at 64 px (random weights: no download) gives 512-d pooled
# snippet features every 4 frames, rescaled to T=32; a small BMN-with-classification turns them
# into labelled proposals. Its weights come from `--checkpoint` (make demo trains one on the
# synthetic corpus with configs/train/demo.py); without one they are random.
_base_ = "./tsn_r50_400x100.py"

temporal_dim = 32
write_batch_size = 16

sampling = dict(clip_interval=4, short_side=64, crop_size=64)

extractor = dict(
    model=dict(backbone=dict(depth=18), cls_head=dict(in_channels=512)),
    checkpoint=None,
    output="pooled",
    batch_size=64,
    num_actors=2,
    num_gpus=0.0,
    dtype="float32",
)

localizer = dict(
    model=dict(
        temporal_dim=32,
        num_samples=8,
        feat_dim=512,
        hidden_dim_1d=64,
        hidden_dim_2d=32,
        hidden_dim_3d=64,
        num_action_classes=4,
    ),
    batch_size=16,
    num_gpus=0.0,
    dtype="float32",
)
