# Production extract config, the stronger option: SlowOnly-R50 8x8 Kinetics-400, pooled
# 2048-d backbone features per 16-frame-stride snippet (8 frames, 8 apart), rescaled to
# T=100, then BMN with a 200-class action head (feat_dim 2048).
_base_ = ["../_base_/models/slowonly_r50_kinetics400.py", "../_base_/models/bmn_cls_400x100.py"]

temporal_dim = 100
write_batch_size = 64
seed = 0

sampling = dict(
    clip_len=8,
    clip_interval=16,
    frame_interval=8,
    short_side=256,
    crop_size=224,
    batch_size=16,
    decode_threads=1,
)

extractor = dict(batch_size=32, num_actors=14, num_gpus=0.07, dtype="bfloat16", videos_per_call=2)

model = dict(feat_dim=2048)

localizer = dict(
    checkpoint=None,
    class_names=[],
    batch_size=512,
    num_actors=1,
    num_gpus=0.02,
    # tf32: see configs/extract/tsn_r50_400x100.py
    dtype="tf32",
)
