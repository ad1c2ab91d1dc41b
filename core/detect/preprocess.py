"""The person detector's test-time input, batched on the detector's device: what mmdet's test
pipeline (``Resize(scale=test_scale, keep_ratio=True)``, ``PackDetInputs``) and its
``DetDataPreprocessor`` (channel order, ``(x - mean) / std``, padding to ``pad_size_divisor``
with ``pad_value``) make of a batch of images of one size, with the data samples' metainfo
(``ori_shape``, ``img_shape``, ``scale_factor``, ``batch_input_shape``, ``pad_shape``).

mmdet runs these per image on the CPU (``mmcv.imrescale``, i.e. ``cv2.resize`` with
``INTER_LINEAR``); here one batch goes to the device (a GPU) as uint8 and is resized there with
OpenCV's own fixed-point arithmetic for 8-bit images, so the resized pixels are OpenCV's, not
a float approximation of them (``tests/unit/test_detect_preprocess.py`` compares them with
``cv2.resize`` and the whole input with mmdet's pipeline):

* per output column ``x``: ``fx = float32((x + 0.5) * (1 / (W' / W)) - 0.5)``, source column
  ``floor(fx)``, weights ``round((1 - f) * 2048)`` and ``round(f * 2048)``, columns before the
  first or past the last source column clamped to it with weights ``(2048, 0)``;
* per output row the same, but rows are only clamped (the weights stay those of ``fy``);
* a row pass in int32 (``S = p0 * a0 + p1 * a1``), then the column pass as OpenCV's vector code
  does it: ``((S0 >> 4) * b0 >> 16) + ((S1 >> 4) * b1 >> 16)``, then ``(v + 2) >> 2``.

Shape legend: B images, H x W input, h x w resized, Hp x Wp padded, C = 3 channels.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

COEF_BITS = 11
"""OpenCV's ``INTER_RESIZE_COEF_BITS``: bilinear weights in units of 1 / 2048."""


def rescale_size(w: int, h: int, scale: tuple[int, int]) -> tuple[int, int]:
    """``mmcv.rescale_size((w, h), scale)`` (what ``Resize(keep_ratio=True)`` uses): the
    largest size with the aspect kept whose long side fits ``max(scale)`` and short side
    ``min(scale)``; ``(new_w, new_h)``."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(w * float(factor) + 0.5), int(h * float(factor) + 0.5)


def _taps(src: int, dst: int, clamp_weights: bool) -> tuple[np.ndarray, ...]:
    """OpenCV's linear taps along one axis: ``(first, second, weight_first, weight_second)``,
    each ``(dst,)``; weights are integers summing to about 2048."""
    scale = 1.0 / (dst / src)
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = (f - s.astype(np.float32)).astype(np.float32)
    if clamp_weights:  # columns: an edge sample takes the edge pixel whole
        out = (s < 0) | (s >= src - 1)
        f[out] = 0
        s = np.clip(s, 0, src - 1)
    one = np.float32(1 << COEF_BITS)
    w0 = np.rint((np.float32(1) - f) * one).astype(np.int32)
    w1 = np.rint(f * one).astype(np.int32)
    return np.clip(s, 0, src - 1), np.clip(s + 1, 0, src - 1), w0, w1


def resize_u8(x_BHWC: torch.Tensor, new_w: int, new_h: int) -> torch.Tensor:
    """``cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)`` of each uint8
    image, bit for bit, on ``x_BHWC``'s device: ``(B, new_h, new_w, C)`` uint8."""
    B, H, W, C = x_BHWC.shape
    if (new_h, new_w) == (H, W):
        return x_BHWC
    dev = x_BHWC.device
    x0, x1, a0, a1 = (torch.from_numpy(v).to(dev) for v in _taps(W, new_w, True))
    y0, y1, b0, b1 = (torch.from_numpy(v).to(dev) for v in _taps(H, new_h, False))
    x = x_BHWC.to(torch.int32)
    S_BHwC = x[:, :, x0] * a0[:, None] + x[:, :, x1] * a1[:, None]
    b0, b1 = b0[:, None, None], b1[:, None, None]
    v = (((S_BHwC[:, y0] >> 4) * b0) >> 16) + (((S_BHwC[:, y1] >> 4) * b1) >> 16)
    return ((v + 2) >> 2).clamp_(0, 255).to(torch.uint8)


def _cv2_resize(img_HWC: np.ndarray, new_w: int, new_h: int) -> np.ndarray:
    import cv2

    if img_HWC.shape[:2] == (new_h, new_w):
        return img_HWC
    return cv2.resize(img_HWC, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


@dataclasses.dataclass
class DetectorInputs:
    """A batch as ``TwoStageDetector.predict`` takes it."""

    inputs_B3HpWp: torch.Tensor
    metainfo: list[dict]
    """Per image: ``img_id``, ``ori_shape``, ``img_shape``, ``scale_factor``,
    ``batch_input_shape``, ``pad_shape``, as mmdet's pipeline and pre-processor set them."""

    def data_samples(self) -> list:
        from mmdet.structures import DetDataSample

        return [DetDataSample(metainfo=m) for m in self.metainfo]


class DetectorPreprocessor:
    """mmdet's test pipeline and ``DetDataPreprocessor`` for RGB uint8 images of one size."""

    def __init__(
        self,
        data_preprocessor: torch.nn.Module,
        test_scale: tuple[int, int],
        opencv_on_cpu: bool = True,
    ) -> None:
        """Reads ``data_preprocessor`` (the model's built ``DetDataPreprocessor``): its mean,
        std, channel conversion and padding; ``test_scale`` is the pipeline's ``Resize``.
        ``opencv_on_cpu``: on the CPU, resize with ``cv2.resize`` itself (the same pixels,
        several times faster there than :func:`resize_u8`)."""
        self.opencv_on_cpu = opencv_on_cpu
        pre = data_preprocessor
        if type(pre).__name__ != "DetDataPreprocessor" or getattr(pre, "batch_augments", None):
            raise ValueError(
                f"the detector's data_preprocessor must be mmdet's DetDataPreprocessor without "
                f"batch_augments, got {type(pre).__name__}"
            )
        self.test_scale = tuple(test_scale)
        self.normalize = bool(pre._enable_normalize)
        self.mean_C = pre.mean.view(-1, 1, 1).clone() if self.normalize else None
        self.std_C = pre.std.view(-1, 1, 1).clone() if self.normalize else None
        # mmdet's pipeline loads BGR; a conversion in the pre-processor means the model sees RGB
        self.model_sees_rgb = bool(pre._channel_conversion)
        self.divisor, self.pad_value = int(pre.pad_size_divisor), float(pre.pad_value)

    def __call__(
        self, images_BHW3: np.ndarray, device: torch.device | str, ids: list[int]
    ) -> DetectorInputs:
        """``images_BHW3``: RGB uint8 images of one size; ``ids`` their ``img_id``."""
        B, H, W, _ = images_BHW3.shape
        new_w, new_h = rescale_size(W, H, self.test_scale)
        if self.opencv_on_cpu and torch.device(device).type == "cpu":
            x_BhwC = torch.from_numpy(
                np.stack([_cv2_resize(im, new_w, new_h) for im in images_BHW3])
            )
        else:
            x = torch.from_numpy(np.ascontiguousarray(images_BHW3)).to(device, non_blocking=True)
            x_BhwC = resize_u8(x, new_w, new_h)
        if not self.model_sees_rgb:
            x_BhwC = x_BhwC.flip(-1)
        x_BChw = x_BhwC.permute(0, 3, 1, 2).float()
        if self.normalize:
            x_BChw = (x_BChw - self.mean_C.to(device)) / self.std_C.to(device)
        Hp = int(np.ceil(new_h / self.divisor)) * self.divisor
        Wp = int(np.ceil(new_w / self.divisor)) * self.divisor
        x_B3HpWp = torch.nn.functional.pad(
            x_BChw, (0, Wp - new_w, 0, Hp - new_h), value=self.pad_value
        )
        meta = dict(ori_shape=(H, W), img_shape=(new_h, new_w), scale_factor=(new_w / W, new_h / H),
                    batch_input_shape=(Hp, Wp), pad_shape=(Hp, Wp))  # fmt: skip
        return DetectorInputs(x_B3HpWp.contiguous(), [dict(meta, img_id=i) for i in ids])
