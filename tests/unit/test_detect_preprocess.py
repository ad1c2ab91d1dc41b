"""The detector's batched input (``core.detect.preprocess``) against mmdet's own: OpenCV's
resize bit for bit, mmdet's test pipeline + ``DetDataPreprocessor`` tensor and metainfo, and
``PersonDetector.detect`` on a batch against ``mmdet.apis.inference_detector`` per image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from core import config
from core.detect.config import DetectConfig
from core.detect.models import PersonDetector, detector_config
from core.detect.preprocess import DetectorPreprocessor, rescale_size, resize_u8

SIZES = [  # (w, h) -> (new_w, new_h): up, down, non-integer, halving, portrait, identity
    ((1280, 720), (1333, 750)), ((176, 144), (192, 157)), ((1920, 1080), (1333, 750)),
    ((97, 55), (1333, 755)), ((2666, 1500), (1333, 750)), ((720, 1280), (750, 1333)),
    ((321, 241), (1066, 800)), ((64, 48), (64, 48)),
]  # fmt: skip


@pytest.mark.parametrize(("size", "new"), SIZES)
def test_resize_is_opencv_bit_for_bit(size, new):
    (w, h), (nw, nh) = size, new
    imgs = np.random.default_rng(w * h).integers(0, 256, (2, h, w, 3), np.uint8)
    got = resize_u8(torch.from_numpy(imgs), nw, nh).numpy()
    for img, g in zip(imgs, got, strict=True):
        np.testing.assert_array_equal(g, cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR))


def test_rescale_size_is_mmcv():
    import mmcv

    for w, h in [(1280, 720), (176, 144), (720, 1280), (4000, 300)]:
        for scale in [(1333, 800), (192, 192)]:
            assert rescale_size(w, h, scale) == mmcv.rescale_size((w, h), scale)


def _mmdet_input(model, cfg_detector, images_rgb):
    """What ``inference_detector`` hands the model: its test pipeline, then the pre-processor."""
    from mmcv.transforms import Compose

    pipeline = detector_config(cfg_detector).test_dataloader.dataset.pipeline
    pipeline[0] = dict(type="mmdet.LoadImageFromNDArray")
    pipe = Compose(pipeline)
    packed = [pipe(dict(img=np.ascontiguousarray(im[..., ::-1]), img_id=i))  # BGR, as from files
              for i, im in enumerate(images_rgb)]  # fmt: skip
    data = {
        "inputs": [p["inputs"] for p in packed],
        "data_samples": [p["data_samples"] for p in packed],
    }
    return model.data_preprocessor(data, False)


@pytest.mark.parametrize("opencv_on_cpu", [True, False])  # False: the GPU's resize, on the CPU
@pytest.mark.parametrize(
    "config_path", ["configs/detect/demo.py", "configs/detect/slowonly_r101_ava21.py"]
)
def test_input_equals_mmdet_pipeline_and_preprocessor(config_path, opencv_on_cpu):
    import mmdet.models  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope

    cfg, _ = config.load(config_path, DetectConfig)

    class Model(torch.nn.Module):  # only the pre-processor of the config's detector
        def __init__(self):
            super().__init__()
            self.data_preprocessor = MODELS.build(cfg.detector.model["data_preprocessor"])

    images = np.random.default_rng(1).integers(0, 256, (3, 120, 200, 3), np.uint8)
    with DefaultScope.overwrite_default_scope("mmdet"):  # mmdet's registries, for this test only
        model = Model()
        ref = _mmdet_input(model, cfg.detector, list(images))
    pre = DetectorPreprocessor(model.data_preprocessor, cfg.detector.test_scale, opencv_on_cpu)
    ours = pre(images, "cpu", [0, 1, 2])
    assert ours.inputs_B3HpWp.shape == ref["inputs"].shape
    assert torch.equal(ours.inputs_B3HpWp, ref["inputs"])
    for m, sample in zip(ours.metainfo, ref["data_samples"], strict=True):
        want = {k: sample.metainfo[k] for k in m}
        assert m == want


@pytest.mark.parametrize("opencv_on_cpu", [True, False])
def test_batched_detect_equals_inference_detector(opencv_on_cpu):
    from mmdet.apis import inference_detector

    cfg, _ = config.load("configs/detect/demo.py", DetectConfig, {"detector.score_thr": 0.0})
    det = PersonDetector(cfg.detector, "cpu", seed=0)
    det.preprocess.opencv_on_cpu = opencv_on_cpu
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (120, 160, 3), np.uint8) for _ in range(3)]
    images.append(rng.integers(0, 256, (90, 200, 3), np.uint8))  # another size: its own batch
    found = det.detect(images)
    assert sum(len(s) for _, s in found) > 0, "the case must have persons to compare"
    for img, (boxes, scores) in zip(images, found, strict=True):
        pred = inference_detector(det.model, np.ascontiguousarray(img[..., ::-1])).pred_instances
        keep = (pred.labels == cfg.detector.category_id) & (pred.scores > cfg.detector.score_thr)
        order = np.argsort(-pred.scores[keep].numpy(), kind="stable")[: cfg.detector.max_persons]
        np.testing.assert_allclose(boxes, pred.bboxes[keep].numpy()[order], rtol=0, atol=1e-3)
        np.testing.assert_allclose(scores, pred.scores[keep].numpy()[order], rtol=0, atol=1e-5)
