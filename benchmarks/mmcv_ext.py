"""``mmcv._ext`` without compiled code: the two kernels our detection models call at inference.

The GPU machine has ``mmcv-lite`` (mmcv 2.1.0 without its C++/CUDA extension): its
``mmcv.ops`` Python modules are all there, but every one of them loads ``mmcv._ext`` at import
and ``mmcv-lite`` has none, so ``import mmcv.ops`` (and so mmdet's detectors) fails. Building
mmcv's CUDA ops there takes longer than one call allows. This file, copied into the installed
mmcv as ``mmcv/_ext.py`` (:func:`install`), is that extension module for the benchmark only:

* ``nms`` (what ``mmcv.ops.nms`` / ``batched_nms`` call: the RPN and the detector's
  ``multiclass_nms``) and ``roi_align_forward`` in ``avg`` mode (what ``mmcv.ops.RoIAlign``
  calls: mmdet's ``SingleRoIExtractor`` and MMAction2's ``SingleRoIExtractor3D``) are
  implemented: with ``torchvision.ops`` where torchvision imports (the GPU machine), else in
  plain torch; ``roi_align_backward`` (training) in plain torch (same results: ``tests/unit/test_mmcv_ext_shim.py`` checks the plain-torch path
  against the real compiled mmcv.ops, and ``benchmarks/detect.py`` checks torchvision's against
  it on the GPU before it times anything);
* every other kernel name exists (``mmcv.ops`` asserts its names at import) and raises
  ``NotImplementedError`` naming itself when called.

mmcv's own Python wrappers (score sorting, ``max_num``, ``batched_nms``'s per-class offsets,
``RoIAlign``'s argument handling) stay mmcv's: only the kernels below them are replaced.

Shapes: N boxes, K RoIs, B images, C channels, H x W feature map, PH x PW pooled output.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import torch

try:  # torchvision: on the GPU machine; not on the CPU machines (no CPU build of it there)
    import torchvision.ops as _tv_ops
except Exception:  # noqa: BLE001  (any failure to load it: plain torch instead)
    _tv_ops = None

IMPLEMENTED = ("nms", "roi_align_forward", "roi_align_backward")


def use_torchvision(enabled: bool) -> None:
    """Turns the torchvision path off (``False``) or back on where it imports (``True``)."""
    global _tv_ops
    if enabled:
        try:
            import torchvision.ops as ops
        except Exception:  # noqa: BLE001
            ops = None
        _tv_ops = ops
    else:
        _tv_ops = None


# ----------------------------------------------------------------------------- NMS


def _iou_N_N(boxes_N4: torch.Tensor, offset: int) -> torch.Tensor:
    """IoU of every pair, with mmcv's ``nms_cpu`` arithmetic (float32, ``+ offset`` sides)."""
    x1, y1, x2, y2 = boxes_N4.unbind(1)
    area_N = (x2 - x1 + offset) * (y2 - y1 + offset)
    xx1 = torch.maximum(x1[:, None], x1[None, :])
    yy1 = torch.maximum(y1[:, None], y1[None, :])
    xx2 = torch.minimum(x2[:, None], x2[None, :])
    yy2 = torch.minimum(y2[:, None], y2[None, :])
    w = (xx2 - xx1 + offset).clamp(min=0)
    h = (yy2 - yy1 + offset).clamp(min=0)
    inter = w * h
    return inter / (area_N[:, None] + area_N[None, :] - inter)


def nms_reference(
    boxes_N4: torch.Tensor, scores_N: torch.Tensor, iou_threshold: float, offset: int = 0
) -> torch.Tensor:
    """Greedy NMS in plain torch: indices kept, highest score first (mmcv's ``nms_cpu``)."""
    if boxes_N4.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes_N4.device)
    order_N = scores_N.sort(0, descending=True)[1]
    ordered = boxes_N4[order_N].float()
    over_NN = (_iou_N_N(ordered, offset) > iou_threshold).cpu().numpy()
    removed = np.zeros(len(order_N), bool)
    keep = []
    for i in range(len(order_N)):
        if removed[i]:
            continue
        keep.append(i)
        removed |= over_NN[i]
    return order_N[torch.as_tensor(keep, dtype=torch.long, device=order_N.device)]


def nms(boxes, scores, iou_threshold: float, offset: int = 0) -> torch.Tensor:
    """``ext_module.nms(bboxes, scores, iou_threshold=..., offset=...)``."""
    if _tv_ops is not None and offset == 0 and boxes.numel():
        return _tv_ops.nms(boxes.float(), scores.float(), float(iou_threshold))
    return nms_reference(boxes, scores, iou_threshold, offset)


# ----------------------------------------------------------------------------- RoIAlign


def _axis_weights(
    start_K: torch.Tensor, size_K: torch.Tensor, pooled: int, grid_K: torch.Tensor, length: int
) -> torch.Tensor:
    """``(K, pooled, length)``: the weight of each feature row (or column) in each output bin
    along one axis, summed over the bin's ``grid_K`` samples, as mmcv's bilinear sampling has
    them (float arithmetic in its order).

    A sample outside ``[-1, length]`` counts as zero; inside, it is clamped at 0 and
    interpolated between its two neighbours (both the last row past ``length - 1``). A grid
    of 0 samples (an empty or inverted RoI) gives zeros.
    """
    K = len(start_K)
    G = max(1, int(grid_K.max().item()))
    dev, dt = start_K.device, start_K.dtype
    bin_K11 = (size_K / pooled)[:, None, None]
    p_1P1 = torch.arange(pooled, device=dev, dtype=dt)[None, :, None]
    g_11G = torch.arange(G, device=dev, dtype=dt)[None, None, :]
    grid_K11 = grid_K[:, None, None]
    # sample positions (K, P, G): start + p * bin + (g + 0.5) * bin / grid
    pos = start_K[:, None, None] + p_1P1 * bin_K11 + (g_11G + 0.5) * bin_K11 / grid_K11.clamp(min=1)
    inside = (pos >= -1.0) & (pos <= length) & (g_11G < grid_K11)
    pos = pos.clamp(min=0)
    low = pos.long()
    at_end = low >= length - 1
    low = torch.where(at_end, torch.full_like(low, length - 1), low)
    high = torch.where(at_end, low, low + 1)
    pos = torch.where(at_end, low.to(dt), pos)
    frac = pos - low.to(dt)
    zero = torch.zeros_like(frac)
    out = torch.zeros(K, pooled, length, device=dev, dtype=dt)
    out.scatter_add_(2, low, torch.where(inside, 1.0 - frac, zero))
    out.scatter_add_(2, high, torch.where(inside, frac, zero))
    return out


def _roi_weights(
    rois_K5: torch.Tensor,
    H: int,
    W: int,
    aligned_height: int,
    aligned_width: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    dtype: torch.dtype,
    chunk: int,
):
    """Per chunk of RoIs: ``(slice, wy_KPH, wx_KPW, count_K)``; a RoI's pooled output is
    ``wy @ feature @ wx^T / count`` (bilinear sampling is separable)."""
    rois = rois_K5.to(dtype)  # mmcv's kernel computes in the input's dtype
    off = 0.5 if aligned else 0.0
    x1, y1 = rois[:, 1] * spatial_scale - off, rois[:, 2] * spatial_scale - off
    x2, y2 = rois[:, 3] * spatial_scale - off, rois[:, 4] * spatial_scale - off
    rw, rh = x2 - x1, y2 - y1
    if not aligned:
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    if sampling_ratio > 0:
        gy, gx = torch.full_like(rh, sampling_ratio), torch.full_like(rw, sampling_ratio)
    else:  # ceilf(roi_size / pooled): 0 or less for an empty or inverted RoI (no samples)
        gy, gx = torch.ceil(rh / aligned_height), torch.ceil(rw / aligned_width)
    for s in range(0, len(rois), chunk):
        sl = slice(s, s + chunk)
        wy_KPH = _axis_weights(y1[sl], rh[sl], aligned_height, gy[sl], H)
        wx_KPW = _axis_weights(x1[sl], rw[sl], aligned_width, gx[sl], W)
        count_K = (gy[sl] * gx[sl]).clamp(min=1)  # mmcv: max(grid_h * grid_w, 1)
        yield sl, wy_KPH, wx_KPW, count_K


def roi_align_reference(
    input_BCHW: torch.Tensor,
    rois_K5: torch.Tensor,
    aligned_height: int,
    aligned_width: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    chunk: int = 64,
) -> torch.Tensor:
    """RoIAlign (``avg``) in plain torch: ``(K, C, PH, PW)``, as mmcv's ``roi_align_forward``."""
    B, C, H, W = input_BCHW.shape
    out = input_BCHW.new_zeros((len(rois_K5), C, aligned_height, aligned_width))
    idx_K = rois_K5[:, 0].long()
    for sl, wy_KPH, wx_KPW, count_K in _roi_weights(
        rois_K5, H, W, aligned_height, aligned_width, spatial_scale, sampling_ratio, aligned,
        input_BCHW.dtype, chunk,
    ):  # fmt: skip
        rows_KCPW = torch.matmul(wy_KPH[:, None], input_BCHW[idx_K[sl]])
        pooled_KCPQ = torch.matmul(rows_KCPW, wx_KPW.transpose(1, 2)[:, None])
        out[sl] = pooled_KCPQ / count_K[:, None, None, None]
    return out


def roi_align_backward_reference(
    grad_KCPQ: torch.Tensor,
    rois_K5: torch.Tensor,
    input_shape: tuple[int, int, int, int],
    aligned_height: int,
    aligned_width: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    chunk: int = 64,
) -> torch.Tensor:
    """The gradient of :func:`roi_align_reference` with respect to its input (its adjoint)."""
    B, C, H, W = input_shape
    grad_BCHW = grad_KCPQ.new_zeros((B, C, H, W))
    idx_K = rois_K5[:, 0].long()
    for sl, wy_KPH, wx_KPW, count_K in _roi_weights(
        rois_K5, H, W, aligned_height, aligned_width, spatial_scale, sampling_ratio, aligned,
        grad_KCPQ.dtype, chunk,
    ):  # fmt: skip
        g = grad_KCPQ[sl] / count_K[:, None, None, None]
        g_KCPW = torch.matmul(g, wx_KPW[:, None])
        grad_BCHW.index_add_(0, idx_K[sl], torch.matmul(wy_KPH.transpose(1, 2)[:, None], g_KCPW))
    return grad_BCHW


def roi_align_forward(
    input,
    rois,
    output,
    argmax_y,
    argmax_x,
    aligned_height: int,
    aligned_width: int,
    spatial_scale: float,
    sampling_ratio: int,
    pool_mode: int,
    aligned: bool,
) -> None:
    """``ext_module.roi_align_forward(...)``: fills ``output`` in place (``pool_mode`` 1 = avg)."""
    if pool_mode != 1:
        raise NotImplementedError("mmcv._ext shim: roi_align_forward supports pool_mode='avg' only")
    if aligned and len(rois) and bool(((rois[:, 3:5] - rois[:, 1:3]) < 0).any()):
        raise RuntimeError("ROIs in ROIAlign cannot have non-negative size!")  # as mmcv's kernel
    if _tv_ops is not None:
        result = _tv_ops.roi_align(
            input, rois.to(input.dtype), (aligned_height, aligned_width), float(spatial_scale),
            int(sampling_ratio), bool(aligned),
        )  # fmt: skip
    else:
        result = roi_align_reference(
            input, rois, aligned_height, aligned_width, spatial_scale, sampling_ratio, aligned
        )
    output.copy_(result)


def roi_align_backward(
    grad_output,
    rois,
    argmax_y,
    argmax_x,
    grad_input,
    aligned_height: int,
    aligned_width: int,
    spatial_scale: float,
    sampling_ratio: int,
    pool_mode: int,
    aligned: bool,
) -> None:
    """``ext_module.roi_align_backward(...)``: adds to ``grad_input`` (``pool_mode`` 1 = avg)."""
    if pool_mode != 1:
        raise NotImplementedError(
            "mmcv._ext shim: roi_align_backward supports pool_mode='avg' only"
        )
    grad_input += roi_align_backward_reference(
        grad_output, rois, tuple(grad_input.shape), aligned_height, aligned_width, spatial_scale,
        sampling_ratio, aligned,
    )  # fmt: skip


# ----------------------------------------------------------------------------- the rest


def __getattr__(name: str):
    """Every other kernel ``mmcv.ops`` names: present (its imports assert them), and
    raising when called."""
    if name.startswith("__"):
        raise AttributeError(name)

    def missing(*args, **kwargs):
        raise NotImplementedError(
            f"mmcv._ext shim (benchmarks/mmcv_ext.py): {name} is not implemented; only "
            f"{', '.join(IMPLEMENTED)} are. Install the full mmcv (MMCV_WITH_OPS=1) for it."
        )

    missing.__name__ = name
    return missing


def install(site_dir: str) -> str:
    """Copies this file into the mmcv installed under ``site_dir`` as ``mmcv/_ext.py``."""
    dest = os.path.join(site_dir, "mmcv", "_ext.py")
    if not os.path.isdir(os.path.dirname(dest)):
        raise FileNotFoundError(f"no mmcv package under {site_dir}")
    for ext in os.listdir(os.path.dirname(dest)):
        if ext.startswith("_ext.") and ext.endswith(".so"):
            raise FileExistsError(f"{site_dir}/mmcv has a compiled _ext ({ext}): nothing to do")
    shutil.copyfile(os.path.abspath(__file__), dest)
    return dest


if __name__ == "__main__":
    import sys

    print(install(sys.argv[1]))
