"""Per-frame image transforms: a decoded frame to an upright, resized, centre-cropped RGB
array, as MMAction2's ``Resize(scale=(-1, short_side))`` and ``CenterCrop(crop_size)`` (in
``mmaction/datasets/transforms/processing.py``) make it.

Normalisation (mean/std) is NOT done here: crops leave as uint8 RGB, four times smaller than
float32 through Ray's object store, and the recognizer's own ``data_preprocessor`` settings
normalise them on the accelerator (:class:`core.features.extractor.FeatureExtractor`).
"""

from __future__ import annotations

import av
import cv2
import numpy as np


def frame_to_crop(frame: av.VideoFrame, short_side: int, crop_size: int) -> np.ndarray:
    """RGB, display rotation, short side resize and centre crop of one frame: (H, W, 3) uint8.

    Display rotation (phone videos) is applied as ``ffmpeg``'s autorotation does.
    """
    rgb_HWC = frame.to_ndarray(format="rgb24")
    turns = quarter_turns(frame.rotation or 0)
    if turns:
        rgb_HWC = np.rot90(rgb_HWC, turns)
    return resize_crop(rgb_HWC, short_side, crop_size)


def resize_crop(
    img_HWC: np.ndarray, short_side: int, crop_size: int, interpolation: int = cv2.INTER_LINEAR
) -> np.ndarray:
    """MMAction2's ``Resize(scale=(-1, short_side))`` then ``CenterCrop(crop_size)``.

    The resize follows ``mmcv.rescale_size``/``mmcv.imresize``: scale ``short_side / min(h, w)``,
    new sides ``int(side * scale + 0.5)``, bilinear (``cv2.INTER_LINEAR``, mmcv's default)
    unless ``interpolation`` names another OpenCV flag; the crop takes
    ``left = (w - crop) // 2`` and ``top = (h - crop) // 2``.
    """
    new_h, new_w = resized_size(*img_HWC.shape[:2], short_side)
    img_HWC = cv2.resize(np.ascontiguousarray(img_HWC), (new_w, new_h), interpolation=interpolation)
    top, left = crop_origin(new_h, new_w, crop_size)
    return np.ascontiguousarray(img_HWC[top : top + crop_size, left : left + crop_size])


def resized_size(h: int, w: int, short_side: int) -> tuple[int, int]:
    """``(new_h, new_w)`` of an ``h x w`` image resized to ``short_side``, as
    ``mmcv.rescale_size``: scale ``short_side / min(h, w)``, sides ``int(side * scale + 0.5)``."""
    scale = short_side / min(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def crop_origin(h: int, w: int, crop_size: int) -> tuple[int, int]:
    """``(top, left)`` of the centre crop of an ``h x w`` image, as MMAction2's ``CenterCrop``."""
    return (h - crop_size) // 2, (w - crop_size) // 2


def quarter_turns(rotation: float) -> int:
    """``np.rot90`` turns that show a frame as ffmpeg's autorotation does."""
    return round(rotation / 90) % 4
