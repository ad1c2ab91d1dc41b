"""The GPU twin of :func:`core.video.transforms.frame_to_crop`: decoded NV12 frames already on
the GPU to upright, resized, centre-cropped uint8 RGB crops, without leaving the device.

Colour: :func:`nv12_to_rgb` converts with the YUV matrix and range that FFmpeg's ``rgb24``
conversion in the CPU path uses (the stream's tag, BT.601 when it has none), not NVDEC's own
converter, which reads an untagged HD stream as BT.709 and so moves its colours by about 5
levels. Chroma is upsampled by repetition, as FFmpeg's unscaled converter does. Then the same
sizes and crop box as the CPU path (:func:`~core.video.transforms.resized_size`,
:func:`~core.video.transforms.crop_origin`), the same display rotation, and bilinear resampling
with half-pixel centres and no antialiasing, as ``cv2.INTER_LINEAR``. Pixels are close to the
CPU path's, not equal (FFmpeg and OpenCV compute in fixed point, torch in float32;
``tests/gpu/test_nvdec_parity.py`` bounds the gap). Crops leave as uint8; the recognizer
normalises them.

Shape legend: F frames, 3 RGB planes, H x W decoded size, S = ``crop_size``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.video.transforms import crop_origin, resized_size

RESIZE_GROUP = 8
"""Frames converted and resized at a time: float32 copies of full-size frames are 12 times the
size of their NV12 pixels."""

YUV_WEIGHTS = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 7: (0.212, 0.087), 9: (0.2627, 0.0593)}
"""``(Kr, Kb)`` by FFmpeg's ``AVColorSpace`` code (BT.709, FCC, SMPTE 240M, BT.2020 NCL); every
other code, unspecified (2) included, converts as BT.601, as ``sws_getCoefficients`` does."""
BT601 = (0.299, 0.114)


def nv12_to_rgb(nv12_FXW: torch.Tensor, colorspace: int, full_range: bool) -> torch.Tensor:
    """NV12 frames (``X = 3 * H / 2`` rows: luma, then interleaved chroma) to planar RGB.

    Args:
        nv12_FXW: uint8 NV12 frames as PyNvVideoCodec hands them over, even H and W.
        colorspace: the stream's ``AVColorSpace`` code (PyAV's ``VideoFrame.colorspace``).
        full_range: JPEG range (0-255) rather than MPEG range (16-235 luma).

    Returns:
        uint8 ``(F, 3, H, W)``.
    """
    f, x, w = nv12_FXW.shape
    h = x * 2 // 3
    y_FHW = nv12_FXW[:, :h].float()
    uv_F2HW = (
        (nv12_FXW[:, h:].reshape(f, h // 2, w // 2, 2).permute(0, 3, 1, 2).float() - 128.0)
        .repeat_interleave(2, dim=2)
        .repeat_interleave(2, dim=3)
    )
    if not full_range:
        y_FHW = (y_FHW - 16.0) * (255.0 / 219.0)
        uv_F2HW = uv_F2HW * (255.0 / 224.0)
    kr, kb = YUV_WEIGHTS.get(colorspace, BT601)
    kg = 1.0 - kr - kb
    cb_FHW, cr_FHW = uv_F2HW[:, 0], uv_F2HW[:, 1]
    r = y_FHW + 2.0 * (1.0 - kr) * cr_FHW
    g = y_FHW - (2.0 * kb * (1.0 - kb) / kg) * cb_FHW - (2.0 * kr * (1.0 - kr) / kg) * cr_FHW
    b = y_FHW + 2.0 * (1.0 - kb) * cb_FHW
    # floor, not round: FFmpeg's fixed-point converter truncates (against PyAV 18's rgb24,
    # mean 0.64 levels off at full size with floor, 1.13 with round)
    return torch.stack([r, g, b], dim=1).floor_().clamp_(0, 255).to(torch.uint8)


def nv12_to_crops(
    nv12_FXW: torch.Tensor,
    short_side: int,
    crop_size: int,
    turns: int = 0,
    colorspace: int = 2,
    full_range: bool = False,
) -> torch.Tensor:
    """:func:`nv12_to_rgb` then :func:`resize_crop_gpu`, ``RESIZE_GROUP`` frames at a time:
    uint8 ``(F, S, S, 3)`` crops on the frames' device."""
    crops = [
        resize_crop_gpu(
            nv12_to_rgb(nv12_FXW[i : i + RESIZE_GROUP], colorspace, full_range),
            short_side,
            crop_size,
            turns,
        )
        for i in range(0, len(nv12_FXW), RESIZE_GROUP)
    ]
    return torch.cat(crops)


def resize_crop_gpu(
    frames_F3HW: torch.Tensor, short_side: int, crop_size: int, turns: int = 0
) -> torch.Tensor:
    """Rotates, resizes (short side to ``short_side``) and centre-crops planar RGB frames.

    Args:
        frames_F3HW: uint8 planar RGB frames of one video, on any device.
        short_side: the shorter side after resizing.
        crop_size: side of the square centre crop, at most ``short_side``.
        turns: counter-clockwise quarter turns that show the frames upright
            (:func:`core.video.transforms.quarter_turns` of the display rotation).

    Returns:
        uint8 crops ``(F, S, S, 3)``, channels last as :class:`core.video.SnippetBatch` holds
        them, on the frames' device.
    """
    if frames_F3HW.ndim != 4 or frames_F3HW.shape[1] != 3:
        raise ValueError(f"expected (F, 3, H, W) frames, got shape {tuple(frames_F3HW.shape)}")
    if turns % 4:
        frames_F3HW = torch.rot90(frames_F3HW, turns % 4, dims=(2, 3))
    h, w = frames_F3HW.shape[2:]
    new_h, new_w = resized_size(h, w, short_side)
    top, left = crop_origin(new_h, new_w, crop_size)
    out_FSS3 = torch.empty(
        (len(frames_F3HW), crop_size, crop_size, 3), dtype=torch.uint8, device=frames_F3HW.device
    )
    for start in range(0, len(frames_F3HW), RESIZE_GROUP):
        x = frames_F3HW[start : start + RESIZE_GROUP].float()
        if (new_h, new_w) != (h, w):
            x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
        x = x[:, :, top : top + crop_size, left : left + crop_size]
        out_FSS3[start : start + len(x)] = x.round_().clamp_(0, 255).permute(0, 2, 3, 1)
    return out_FSS3
