# How the production extract configs run the localizer on one node with one GPU: one actor,
# BMN in batches of 512 videos, 2% of the GPU (the 14 decoding actors of each config share
# the rest, 7% each: MMEngine does not let two bases define one section). Localizer weights come from
# `jobs.extract --checkpoint best.pth` (written by jobs.train).
temporal_dim = 100
write_batch_size = 64
seed = 0

localizer = dict(
    checkpoint=None,
    class_names=[],
    batch_size=512,
    num_actors=1,
    num_gpus=0.02,
    # tf32 keeps AR@100 within 4e-5 of float32 at 2,840 videos/s on an H100; bf16 is faster
    # (3,750) but moved AR@100 by 0.0098 (benchmarks/results/bmn_inference_h100.json)
    dtype="tf32",
)
