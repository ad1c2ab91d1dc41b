"""CUDA against CPU for the code that runs on the accelerator (skipped without CUDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.models.bmn import BMNwActionCls
from core.models.localizer import Localizer
from core.models.postprocess import batched_proposals

SMALL = dict(
    temporal_dim=32, boundary_ratio=0.5, num_samples=8, num_samples_per_bin=3, feat_dim=64,
    soft_nms_alpha=0.4, soft_nms_low_threshold=0.5, soft_nms_high_threshold=0.9,
    post_process_top_k=100, hidden_dim_1d=64, hidden_dim_2d=32, hidden_dim_3d=64,
)  # fmt: skip

pytestmark = pytest.mark.usefixtures("exact_fp32")


def test_postprocess_cuda_equals_cpu():
    g = torch.Generator().manual_seed(0)
    B, T = 32, 100
    conf = torch.rand(B, 2, T, T, generator=g)
    start, end = torch.rand(B, T, generator=g), torch.rand(B, T, generator=g)
    durations = torch.rand(B, generator=g, dtype=torch.float64) * 100 + 5
    kw = dict(
        soft_nms_alpha=0.4, soft_nms_low_threshold=0.5, soft_nms_high_threshold=0.9, top_k=100
    )
    cpu = batched_proposals(conf, start, end, durations, **kw)
    gpu = batched_proposals(conf.cuda(), start.cuda(), end.cuda(), durations.cuda(), **kw)
    assert torch.equal(cpu.valid_BP, gpu.valid_BP.cpu())
    torch.testing.assert_close(cpu.segments_BP2, gpu.segments_BP2.cpu(), rtol=0, atol=1e-9)
    torch.testing.assert_close(cpu.scores_BP, gpu.scores_BP.cpu(), rtol=1e-12, atol=1e-12)


def test_model_cuda_equals_cpu_and_tf32_localizer_close():
    torch.manual_seed(0)
    model = BMNwActionCls(**SMALL, num_action_classes=5).eval()
    x = torch.rand(8, 64, 32)
    with torch.no_grad():
        cpu = model.forward_tensors(x)
        gpu = model.cuda().forward_tensors(x.cuda())
    for a, b in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-4, atol=1e-5)
    names = [f"c{i}" for i in range(5)]
    fp32 = Localizer(model, names, "cuda", "float32").propose(x.numpy(), np.full(8, 30.0))
    tf32 = Localizer(model, names, "cuda", "tf32").propose(x.numpy(), np.full(8, 30.0))
    np.testing.assert_array_equal(fp32[2], tf32[2])
    # the best proposal of each video is the same in TF32
    np.testing.assert_allclose(fp32[0][:, 0, :2], tf32[0][:, 0, :2], atol=30.0 / 32 + 1e-9)


def test_read_shards_to_cuda_equals_cpu(tmp_path):
    """A device split's rows, copied to the GPU file by file, land where the host path puts
    them."""
    from core.train import data, synthetic_features
    from core.train.config import DataSection

    out = str(tmp_path / "feats")
    anno_uri = synthetic_features.write_synthetic(out, 23, C=3, T=4, num_classes=2, rows_per_file=4)
    ts = data.prepare_training_set(out, anno_uri, DataSection())
    wanted = {data.TRAIN: data.shard_ids(ts, data.TRAIN, 1, 2), data.VAL: list(ts.gt[data.VAL])}
    cpu = data.read_shards(ts, wanted, "cpu", device_splits=[data.TRAIN])
    gpu = data.read_shards(ts, wanted, "cuda", device_splits=[data.TRAIN])
    assert gpu[data.TRAIN].feats_NCT.device.type == "cuda"
    for split in wanted:
        assert gpu[split].video_ids == cpu[split].video_ids
        assert torch.equal(torch.as_tensor(gpu[split].feats_NCT).cpu(),
                           torch.as_tensor(cpu[split].feats_NCT))  # fmt: skip
        np.testing.assert_array_equal(gpu[split].durations_N, cpu[split].durations_N)
