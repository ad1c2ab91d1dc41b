"""The GPU twin of :func:`core.video.transforms.frame_to_crop`: decoded RGB frames already on
the GPU to upright, resized, centre-cropped uint8 crops, without leaving the device.

Same sizes and crop box as the CPU path (:func:`~core.video.transforms.resized_size`,
:func:`~core.video.transforms.crop_origin`), same display rotation, bilinear resampling with
half-pixel centres and no antialiasing as ``cv2.INTER_LINEAR``. The pixels are close to the CPU
path's, not equal: OpenCV interpolates in 11-bit fixed point, torch in float32, and NVDEC's
YUV to RGB conversion is not FFmpeg's (``tests/gpu/test_nvdec_parity.py`` measures the gap).
Like the CPU path, crops leave as uint8 RGB; the recognizer normalises them.

Shape legend: F frames, 3 RGB planes, H x W decoded size, S = ``crop_size``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.video.transforms import crop_origin, resized_size

RESIZE_GROUP = 8
"""Frames resized at a time: float32 copies of full-size frames are 4 times their uint8 size."""


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
