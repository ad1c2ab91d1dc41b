# Production extract config: the ActivityNet layout, 400 x 100.
# TSN-R50 Kinetics-400 class scores per 16-frame snippet (as ActivityNet's csv_mean_100
# features), rescaled to T=100 positions, then BMN with a 200-class action head; laid out for
# one 16-core node with one GPU and its NVDEC (configs/_base_/runtime/extract_gpu_node.py).
_base_ = [
    "../_base_/models/tsn_r50_kinetics400.py",
    "../_base_/models/bmn_cls_400x100.py",
    "../_base_/runtime/extract_gpu_node.py",
]

# decoder "auto": the pool's NVDEC actors decode with NVDEC where the node has it, the others
# on the CPU (configs/_base_/runtime/extract_gpu_node.py)
sampling = dict(
    clip_len=1,
    clip_interval=16,
    frame_interval=1,
    short_side=256,
    crop_size=256,
    batch_size=32,
    decoder="auto",
)

# 6 CPU-decoding actors + 4 NVDEC ones, 4 calls at once each (24 CPU decoder threads, still
# more than the cores; 16 NVDEC streams), 4.8% of the GPU each; one video a call. On an H100
# node: 47.4 videos/s against 42.3 with 7 + 3 actors, same run and videos
# (benchmarks/results/extract_h100.json)
extractor = dict(batch_size=128, num_actors=6, num_gpus=0.048, dtype="bfloat16", videos_per_call=1)
pipeline = dict(nvdec_actors_per_node=4)
