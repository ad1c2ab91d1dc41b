"""The two models of spatio-temporal detection, batched: the mmdet person detector and the
MMAction2 action model (``FastRCNN``: SlowOnly backbone + ``AVARoIHead`` over person boxes).

Both compute what MMAction2's demo (``demo/demo_spatiotemporal_det.py``) computes one frame or
one clip per call, for many frames or clips per call: inputs of one size form a batch (so a
batch is padded exactly as one image alone is, and results do not depend on what else is in
the batch); the detector's input is what mmdet's own test pipeline (``Resize(test_scale, keep_ratio)``,
``PackDetInputs``, ``DetDataPreprocessor``) makes for ``mmdet.apis.inference_detector``,
computed for the batch on the detector's device (:mod:`core.detect.preprocess`); the
action model gets clips normalised with its ``data_preprocessor`` mean and std, the person
boxes as proposals and ``test_cfg.rcnn.action_thr = 0``, as the demo sets them.

Shape legend: B images or clips in a batch, N boxes, C action classes of the model (81 for
AVA: background + 80), T clip frames, H x W image, h x w clip frames.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import Any

import numpy as np
import torch

from core.detect.config import ActionSection, DetectorSection

log = logging.getLogger(__name__)


def load_weights(model: torch.nn.Module, uri: str, allow_pickle: bool) -> str:
    """Loads an OpenMMLab (``state_dict`` + ``meta``) or plain checkpoint; returns its sha256."""
    from mmengine.runner.checkpoint import load_state_dict

    from core.io.checkpoint import load_state_dict_from

    state, sha256 = load_state_dict_from(uri, allow_pickle=allow_pickle)
    load_state_dict(model, state, strict=False, logger="current")
    return sha256


def autocast(dtype: str, device: torch.device | str):
    """Autocast to ``dtype`` (a config's ``dtype``) on CUDA; nothing elsewhere or for float32."""
    device = torch.device(device)
    if dtype == "float32" or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=getattr(torch, dtype))


def _groups_by_shape(arrays: list[np.ndarray], batch_size: int) -> list[list[int]]:
    """Indices of ``arrays`` in batches of one shape each, at most ``batch_size`` long."""
    by_shape: dict[tuple, list[int]] = {}
    for i, a in enumerate(arrays):
        by_shape.setdefault(tuple(a.shape), []).append(i)
    return [
        idx[s : s + batch_size] for idx in by_shape.values() for s in range(0, len(idx), batch_size)
    ]


def detector_config(section: DetectorSection):
    """The mmengine ``Config`` that mmdet's ``init_detector`` and ``inference_detector`` read:
    the model and a test pipeline (from files, as the demo's config has it)."""
    from mmengine.config import Config

    model = copy.deepcopy(section.model)
    return Config(
        dict(
            model=model,
            default_scope="mmdet",
            test_dataloader=dict(
                dataset=dict(
                    pipeline=[
                        dict(type="mmdet.LoadImageFromFile"),
                        dict(type="mmdet.Resize", scale=tuple(section.test_scale), keep_ratio=True),
                        dict(
                            type="mmdet.PackDetInputs",
                            meta_keys=(
                                "img_id",
                                "img_path",
                                "ori_shape",
                                "img_shape",
                                "scale_factor",
                            ),
                        ),
                    ]
                )
            ),
        )
    )


class PersonDetector:
    """Person boxes of RGB images: mmdet's detector, batched over images of one size, its test
    pipeline and pre-processor on the detector's device (:mod:`core.detect.preprocess`)."""

    def __init__(
        self,
        section: DetectorSection,
        device: str = "cpu",
        seed: int = 0,
        allow_pickle: bool = False,
    ) -> None:
        import mmdet.models  # noqa: F401  (registers mmdet's modules)
        from mmdet.apis import init_detector

        from core.detect.preprocess import DetectorPreprocessor

        self.section, self.device = section, device
        torch.manual_seed(seed)
        self.model = init_detector(
            detector_config(section), checkpoint=None, palette="random", device=device
        )
        self.sha256 = "random"
        if section.checkpoint:
            self.sha256 = load_weights(self.model, section.checkpoint, allow_pickle)
        self.model.eval()
        self.preprocess = DetectorPreprocessor(self.model.data_preprocessor, section.test_scale)

    @torch.no_grad()
    def detect(self, images_rgb: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each image's persons: ``(boxes_N4 float32 x1 y1 x2 y2 in its pixels, scores_N)``,
        those of ``category_id`` scoring above ``score_thr``, highest first, at most
        ``max_persons``."""
        s = self.section
        out: list[tuple[np.ndarray, np.ndarray]] = [None] * len(images_rgb)  # type: ignore[list-item]
        for idx in _groups_by_shape(images_rgb, s.batch_size):
            batch = self.preprocess(np.stack([images_rgb[i] for i in idx]), self.device, idx)
            with autocast(s.dtype, self.device):
                results = self.model.predict(
                    batch.inputs_B3HpWp, batch.data_samples(), rescale=True
                )
            kept = []  # each image's persons, still on the device: one copy to the host below
            for result in results:
                pred = result.pred_instances
                scores = pred.scores.float()
                keep = (pred.labels == s.category_id) & (scores > s.score_thr)
                scores = scores[keep]
                order = torch.sort(scores, descending=True, stable=True)[1][: s.max_persons]
                kept.append(torch.cat([pred.bboxes[keep][order].float(), scores[order, None]], 1))
            counts = [len(k) for k in kept]
            found_N5 = torch.cat(kept).cpu().numpy() if kept else np.zeros((0, 5), np.float32)
            for i, f_N5 in zip(idx, np.split(found_N5, np.cumsum(counts)[:-1]), strict=True):
                out[i] = (np.ascontiguousarray(f_N5[:, :4]), np.ascontiguousarray(f_N5[:, 4]))
        return out


def action_model_dict(section: ActionSection) -> dict[str, Any]:
    """The model dict as the demo builds it: no pretrained backbone, ``action_thr=0``."""
    model = copy.deepcopy(section.model)
    model.get("backbone", {})["pretrained"] = None
    model.pop("init_cfg", None)
    model.setdefault("test_cfg", {})["rcnn"] = dict(action_thr=0)
    return model


def build_action_model(section: ActionSection, seed: int = 0) -> torch.nn.Module:
    """MMAction2's detector from ``section.model`` with seeded random weights."""
    import mmaction.models  # noqa: F401  (registers MMAction2's modules)
    import mmdet.models  # noqa: F401
    from mmaction.registry import MODELS
    from mmengine.config import ConfigDict
    from mmengine.registry import init_default_scope

    init_default_scope("mmaction")
    torch.manual_seed(seed)
    model = MODELS.build(ConfigDict(action_model_dict(section)))
    return model


def preprocessor_stats(
    section: ActionSection, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std (RGB order) of the action model's ``data_preprocessor``."""
    pre = section.model.get("data_preprocessor", {})
    mean = pre.get("mean", [123.675, 116.28, 103.53])
    std = pre.get("std", [58.395, 57.12, 57.375])
    return (
        torch.tensor(mean, dtype=torch.float32, device=device),
        torch.tensor(std, dtype=torch.float32, device=device),
    )


def clips_to_input(
    x_BThw3: torch.Tensor, channel_order: str, mean_C: torch.Tensor, std_C: torch.Tensor
) -> torch.Tensor:
    """RGB uint8 clips as the action model takes them: normalised, ``(B, 3, T, h, w)`` float
    (channels flipped first for ``channel_order='bgr'``). Inference and training use it."""
    x = x_BThw3.float()
    if channel_order == "bgr":
        x = x.flip(-1)
    x = (x - mean_C) / std_C
    return x.permute(0, 4, 1, 2, 3).contiguous()


class ActionModel:
    """Action scores of person boxes in clips: MMAction2's ``FastRCNN``, batched over clips."""

    def __init__(
        self, section: ActionSection, device: str = "cpu", seed: int = 0, allow_pickle: bool = False
    ) -> None:
        self.section = section
        self.device = torch.device(device)
        self.model = build_action_model(section, seed)
        self.sha256 = "random"
        if section.checkpoint:
            self.sha256 = load_weights(self.model, section.checkpoint, allow_pickle)
        self.model.to(self.device).eval()
        self.mean_C, self.std_C = preprocessor_stats(section, self.device)
        self.num_classes = int(section.model["roi_head"]["bbox_head"]["num_classes"])

    @torch.no_grad()
    def scores(self, clips_Thw3: list[np.ndarray], boxes_N4: list[np.ndarray]) -> list[np.ndarray]:
        """Scores ``(N, C)`` of each clip's boxes (in the clip's pixels); clips are RGB uint8."""
        from mmengine.structures import InstanceData

        out: list[np.ndarray] = [np.zeros((0, self.num_classes), np.float32)] * len(clips_Thw3)
        todo = [i for i, b in enumerate(boxes_N4) if len(b)]
        for group in _groups_by_shape([clips_Thw3[i] for i in todo], self.section.batch_size):
            idx = [todo[g] for g in group]
            x_BThw3 = torch.from_numpy(np.stack([clips_Thw3[i] for i in idx])).to(self.device)
            x_BCThw = clips_to_input(x_BThw3, self.section.channel_order, self.mean_C, self.std_C)
            h, w = clips_Thw3[idx[0]].shape[1:3]
            metas = [dict(img_shape=(h, w))] * len(idx)
            proposals = [
                InstanceData(bboxes=torch.from_numpy(boxes_N4[i]).to(self.device)) for i in idx
            ]
            # FastRCNN.predict (extract_feat, then the head over the given proposals), batched:
            # AVARoIHead.predict asserts one sample, its predict_bbox takes a batch
            head = self.model.roi_head
            with autocast(self.section.dtype, self.device):
                feats = self.model.extract_feat(x_BCThw)
                results = head.predict_bbox(feats, metas, proposals, rcnn_test_cfg=head.test_cfg)
            for i, r in zip(idx, results, strict=True):
                out[i] = r.scores.float().cpu().numpy()
        return out
