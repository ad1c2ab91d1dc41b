"""benchmarks/mmcv_ext.py (the plain-torch ``mmcv._ext`` kernels for mmcv-lite) against the
compiled mmcv.ops of this environment, on random inputs: kernel by kernel, and through mmcv's
own Python wrappers (``nms``, ``batched_nms``, ``RoIAlign``) with the shim swapped in."""

from __future__ import annotations

import pytest
import torch
from mmcv import _ext as real_ext  # the compiled ops (make setup builds mmcv with them)

from benchmarks import mmcv_ext as shim


@pytest.fixture(autouse=True)
def plain_torch():
    shim.use_torchvision(False)  # the CPU machines have no torchvision; test what runs here
    yield
    shim.use_torchvision(True)


def random_boxes(n: int, g: torch.Generator, scale: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * scale
    return torch.cat([xy, xy + torch.rand(n, 2, generator=g) * scale / 2], 1)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_equals_mmcv(seed, offset, thr):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(50, 400, (1,), generator=g))
    boxes, scores = random_boxes(n, g), torch.rand(n, generator=g)
    expected = real_ext.nms(boxes, scores, iou_threshold=thr, offset=offset)
    got = shim.nms(boxes, scores, iou_threshold=thr, offset=offset)
    if thr <= 0.5:
        assert len(expected) < n  # overlapping random boxes: some are suppressed
    assert torch.equal(got, expected)


def test_nms_of_nothing():
    empty = torch.zeros(0, 4)
    assert shim.nms(empty, torch.zeros(0), iou_threshold=0.5).shape == (0,)


def roi_inputs(seed: int, aligned: bool):
    g = torch.Generator().manual_seed(seed)
    B, C, H, W = 2, 5, int(torch.randint(5, 40, (1,), generator=g)), 33
    feat = torch.randn(B, C, H, W, generator=g)
    K = 60
    idx = torch.randint(0, B, (K, 1), generator=g).float()
    # boxes partly outside the map, tiny and empty ones included
    xy = torch.rand(K, 2, generator=g) * 300 - 40
    wh = torch.rand(K, 2, generator=g) * 250
    wh[:5] = 0.0
    wh[5:8] = 0.5
    wh[8:12] = torch.rand(4, 2, generator=g) * 4
    return feat, torch.cat([idx, xy, xy + wh], 1)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("out_size", [(7, 7), (8, 8), (3, 5)])
def test_roi_align_equals_mmcv(seed, aligned, sampling_ratio, out_size):
    feat, rois = roi_inputs(seed, aligned)
    kw = dict(aligned_height=out_size[0], aligned_width=out_size[1], spatial_scale=1 / 8,
              sampling_ratio=sampling_ratio, pool_mode=1, aligned=aligned)  # fmt: skip
    shape = (len(rois), feat.shape[1], *out_size)
    expected, got = torch.zeros(shape), torch.zeros(shape)
    real_ext.roi_align_forward(feat, rois, expected, torch.zeros(0), torch.zeros(0), **kw)
    shim.roi_align_forward(feat, rois, got, torch.zeros(0), torch.zeros(0), **kw)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("aligned", [True, False])
def test_roi_align_backward_equals_mmcv(seed, aligned):
    feat, rois = roi_inputs(seed, aligned)
    g = torch.Generator().manual_seed(seed + 100)
    grad_out = torch.randn(len(rois), feat.shape[1], 7, 7, generator=g)
    kw = dict(aligned_height=7, aligned_width=7, spatial_scale=1 / 8, sampling_ratio=0,
              pool_mode=1, aligned=aligned)  # fmt: skip
    expected, got = torch.zeros_like(feat), torch.zeros_like(feat)
    real_ext.roi_align_backward(grad_out, rois, torch.zeros(0), torch.zeros(0), expected, **kw)
    shim.roi_align_backward(grad_out, rois, torch.zeros(0), torch.zeros(0), got, **kw)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_inverted_rois_are_refused_as_by_mmcv():
    feat, rois = roi_inputs(0, True)
    rois[3, 3] = rois[3, 1] - 5  # x2 < x1
    out = torch.zeros(len(rois), feat.shape[1], 7, 7)
    for ext in (real_ext, shim):
        with pytest.raises(RuntimeError, match="ROIs in ROIAlign"):
            ext.roi_align_forward(feat, rois, out, torch.zeros(0), torch.zeros(0), 7, 7, 1 / 8, 0,
                                  1, True)  # fmt: skip


def test_unimplemented_kernels_exist_and_raise():
    assert hasattr(shim, "deform_conv_forward")  # mmcv.ops asserts names at import
    with pytest.raises(NotImplementedError, match="deform_conv_forward"):
        shim.deform_conv_forward(torch.zeros(1))
    with pytest.raises(NotImplementedError, match="avg"):
        shim.roi_align_forward(torch.zeros(1, 1, 2, 2), torch.zeros(1, 5), torch.zeros(1, 1, 1, 1),
                               None, None, 1, 1, 1.0, 0, 0, True)  # fmt: skip


def test_mmcv_wrappers_with_the_shim_swapped_in(monkeypatch):
    """mmcv.ops.nms / batched_nms / RoIAlign (mmcv's Python) give the same with the shim."""
    import importlib

    from mmcv.ops import RoIAlign, batched_nms, nms

    nms_module = importlib.import_module("mmcv.ops.nms")  # (mmcv.ops.nms is also a function)
    roi_module = importlib.import_module("mmcv.ops.roi_align")

    g = torch.Generator().manual_seed(7)
    boxes, scores = random_boxes(500, g), torch.rand(500, generator=g)
    labels = torch.randint(0, 6, (500,), generator=g)
    feat, rois = roi_inputs(3, True)
    layer = RoIAlign(7, spatial_scale=1 / 8, sampling_ratio=0, aligned=True)
    nms_cfg = dict(type="nms", iou_threshold=0.6)

    def run():
        return (
            nms(boxes, scores, 0.5, max_num=50),
            batched_nms(boxes, scores, labels, nms_cfg),
            layer(feat, rois),
        )

    (d1, k1), (bd1, bk1), r1 = run()
    monkeypatch.setattr(nms_module, "ext_module", shim)
    monkeypatch.setattr(roi_module, "ext_module", shim)
    (d2, k2), (bd2, bk2), r2 = run()
    assert torch.equal(k1, k2) and torch.equal(d1, d2)
    assert torch.equal(bk1, bk2) and torch.equal(bd1, bd2)
    torch.testing.assert_close(r2, r1, rtol=1e-5, atol=1e-5)
