# How the production extract configs lay out one node with 16 cores and one GPU. The feature
# actors are one pool (core/pipeline/pools.py): the configs' extractor.num_actors decode on the
# CPU, one core each, and pipeline.nvdec_actors_per_node more decode with the GPU's NVDEC,
# a quarter of a core each; Ray Data gives each video to whichever actor has room, so both
# decoders stay busy. Write tasks take half a core, the localizer 2% of the GPU. Localizer
# weights come from `jobs.extract --checkpoint best.pth` (written by jobs.train).
# Measured layout and rates: benchmarks/results/extract_h200.json.
temporal_dim = 100
write_batch_size = 64
seed = 0

localizer = dict(
    checkpoint=None,
    class_names=[],
    # 64 videos a call (as many as a write): BMN does about 1,400 videos/s at that size, far
    # above the decoders' rate, and a larger batch holds videos back until it fills
    batch_size=64,
    num_actors=1,
    num_gpus=0.02,
    # tf32 keeps AR@100 within 4e-5 of float32 at 2,840 videos/s on an H100; bf16 is faster
    # (3,750) but moved AR@100 by 0.0098 (benchmarks/results/bmn_inference_h100.json)
    dtype="tf32",
)

# few processes, four calls at once in each, every call with a decoder of its own: a CPU
# actor's threads decode while one of them waits for its recognizer batch, an NVDEC actor keeps
# four decoder sessions busy (3 actors: 12 NVDEC streams on the node), and 10 CUDA contexts
# share the GPU instead of 20; one more call queued so that none idles. The actors' threads
# sleep while they wait for the GPU (cuda_blocking_sync) instead of spinning on the cores the
# CPU decoders need: hybrid 36.3 videos/s against 30.3 spinning, same run
# (benchmarks/results/extract_h200_sleeping_waits.json); over a long run the hybrid made 40.5,
# 1.81x a CPU-only job that sleeps too (benchmarks/results/extract_h200.json)
pipeline = dict(
    nvdec_actors_per_node=3,
    nvdec_num_cpus=0.25,
    write_num_cpus=0.5,
    calls_per_actor=4,
    tasks_in_flight_per_actor=5,
    warm_up=True,
    cuda_blocking_sync=True,
)
