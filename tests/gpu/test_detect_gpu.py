"""The person detector's input and boxes on CUDA (skipped without CUDA): the fixed-point resize
against ``cv2.resize``, the whole input against mmdet's test pipeline + ``DetDataPreprocessor``
on the same device, and ``PersonDetector.detect`` against ``inference_detector`` there."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from core import config
from core.detect.config import DetectConfig
from core.detect.models import PersonDetector
from core.detect.preprocess import resize_u8
from tests.unit.test_detect_preprocess import SIZES, _mmdet_input

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.usefixtures("exact_fp32"),
]


@pytest.mark.parametrize(("size", "new"), SIZES)
def test_resize_on_cuda_is_opencv_bit_for_bit(size, new):
    (w, h), (nw, nh) = size, new
    imgs = np.random.default_rng(w + h).integers(0, 256, (2, h, w, 3), np.uint8)
    got = resize_u8(torch.from_numpy(imgs).cuda(), nw, nh).cpu().numpy()
    for img, g in zip(imgs, got, strict=True):
        np.testing.assert_array_equal(g, cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR))


@pytest.fixture(scope="module")
def detector():
    """The production detector, random weights with the person logit raised (as in
    ``benchmarks/detect.py``) so that its boxes pass mmdet's own score threshold."""
    cfg, _ = config.load(
        "configs/detect/slowonly_r101_ava21.py", DetectConfig,
        {"detector.checkpoint": None, "detector.score_thr": 0.0, "detector.max_persons": 1000},
    )  # fmt: skip
    det = PersonDetector(cfg.detector, "cuda", seed=0)
    with torch.no_grad():
        det.model.roi_head.bbox_head.fc_cls.bias[cfg.detector.category_id] += 7.0
    return cfg, det


def test_input_on_cuda_equals_mmdet(detector):
    cfg, det = detector
    images = np.random.default_rng(3).integers(0, 256, (2, 720, 1280, 3), np.uint8)
    ref = _mmdet_input(det.model, cfg.detector, list(images))
    ours = det.preprocess(images, "cuda", [0, 1])
    assert ours.inputs_B3HpWp.shape == ref["inputs"].shape
    torch.testing.assert_close(ours.inputs_B3HpWp, ref["inputs"], rtol=0, atol=1e-5)


def test_detect_on_cuda_equals_inference_detector(detector):
    from mmdet.apis import inference_detector

    cfg, det = detector
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (720, 1280, 3), np.uint8) for _ in range(3)]
    found = det.detect(images)
    for img, (boxes, scores) in zip(images, found, strict=True):
        pred = inference_detector(det.model, np.ascontiguousarray(img[..., ::-1])).pred_instances
        pred = pred.cpu().numpy()
        keep = (pred.labels == cfg.detector.category_id) & (pred.scores > cfg.detector.score_thr)
        ref_boxes, ref_scores = pred.bboxes[keep], pred.scores[keep]
        assert len(boxes) == len(ref_boxes) > 0
        assert np.all(np.diff(scores) <= 0)  # highest first
        # each box against the nearest reference box: near-tied scores may swap places
        dist_NM = np.abs(boxes[:, None] - ref_boxes[None]).max(-1)
        nearest = dist_NM.argmin(1)
        assert dist_NM.min(1).max() < 0.05
        np.testing.assert_allclose(scores, ref_scores[nearest], rtol=0, atol=1e-4)
