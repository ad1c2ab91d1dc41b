"""Parity with MMAction2's spatio-temporal demo (``demo/demo_spatiotemporal_det.py``).

The demo's steps are rebuilt here from MMAction2's and mmdet's own APIs (not copied): its
keyframes (1-based ``np.arange(window // 2, num_frames + 1 - window // 2, predict_stepsize)``),
its frames (``mmcv.imresize`` to ``mmcv.rescale_size((w, h), (short_side, inf))``), its person
boxes (``mmaction.apis.detection_inference`` on the keyframes as image files, boxes scaled by
``w_ratio``/``h_ratio``), its per-clip action call (frames normalised in place with
``mmcv.imnormalize_(..., to_rgb=False)``, ``model(input, [ActionDataSample], mode='predict')``),
and its ``pack_result`` normalisation and ``--action-score-thr`` filter. Our pipeline's stage
classes (called directly, without Ray) must give the same detections rows, for the same random
(seeded) weights, on a real video. Both sides decode with our decoder (the demo's OpenCV
decode is FFmpeg as well; the comparison is of everything after it).
"""

from __future__ import annotations

import contextlib
import io

import cv2
import mmcv
import numpy as np
import pytest
import torch

from core import config
from core.detect import stages, writer
from core.detect.config import DetectConfig
from core.detect.frames import iter_frames, upright_rgb
from core.eval.ava import read_label_map
from tests.integration import videos

OPTIONS = {
    "detector.score_thr": 0.0,  # random weights: keep their (low-scoring) boxes
    "detector.max_persons": 8,
    "action.score_thr": 0.45,
    "action.channel_order": "bgr",  # the demo feeds OpenCV's BGR frames
}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = videos.require_real_videos()
    path = str(folder / "carphone_pristine.mp4")
    cfg, _ = config.load("configs/detect/demo.py", DetectConfig, dict(OPTIONS))
    # the first 3 seconds are enough keyframes; a shorter copy keeps the test fast
    frames = [upright_rgb(f) for i, f, _ in iter_frames(path) if i < 75]
    short = str(tmp_path_factory.mktemp("parity") / "carphone_3s.mp4")
    videos.encode_frames(short, frames, 25, codec_options={"qp": "0"})
    decoded = [upright_rgb(f) for _, f, _ in iter_frames(short)]
    return cfg, short, decoded


def ours(cfg: DetectConfig, path: str):
    labels = read_label_map(cfg.action.label_map)
    persons = stages.PersonBoxes(cfg)
    actions = stages.ActionScores(cfg, list(labels))
    asm = writer.VideoAssembler()
    done = []
    batch = {"video_id": np.array(["v"], object), "uri": np.array([path], object)}
    for block in stages.decode_videos(batch, cfg):
        done += asm.add(actions(persons(block)))
    (result,) = [asm.pop(v, len(labels), cfg.detector.max_persons) for v in done]
    ctx = writer.DetectWriteContext("", "run", list(labels), list(labels.values()), cfg.action.score_thr,
                              "random", "random")  # fmt: skip
    return result, writer.detections_table([result], ctx), persons, actions, labels


def demo(cfg: DetectConfig, frames_rgb, persons, actions, labels, tmp_path):
    """The demo's computation, from MMAction2's APIs, with our models' weights."""
    from mmaction.apis import detection_inference
    from mmaction.structures import ActionDataSample
    from mmengine.structures import InstanceData

    s = cfg.sampling
    original = [f[..., ::-1] for f in frames_rgb]  # the demo's frames are BGR
    num_frame = len(original)
    h, w, _ = original[0].shape
    new_w, new_h = mmcv.rescale_size((w, h), (s.short_side, np.inf))
    resized = [mmcv.imresize(img, (new_w, new_h)) for img in original]
    w_ratio, h_ratio = new_w / w, new_h / h
    window = s.clip_len * s.frame_interval
    timestamps = np.arange(window // 2, num_frame + 1 - window // 2, s.predict_stepsize)
    paths = []
    for ind in timestamps:
        paths.append(str(tmp_path / f"{ind:05d}.png"))
        cv2.imwrite(paths[-1], original[ind - 1])
    with contextlib.redirect_stdout(io.StringIO()):
        dets, _ = detection_inference(persons.detector.model, None, paths, cfg.detector.score_thr,
                                      cfg.detector.category_id, "cpu")  # fmt: skip
    model = actions.model.model
    pre = cfg.action.model["data_preprocessor"]
    norm = dict(mean=np.array(pre["mean"]), std=np.array(pre["std"]), to_rgb=False)
    rows = []
    for ts, det in zip(timestamps, dets, strict=True):
        det = det[: cfg.detector.max_persons].copy()
        det[:, 0:4:2] *= w_ratio
        det[:, 1:4:2] *= h_ratio
        proposal = torch.from_numpy(det[:, :4])
        if proposal.shape[0] == 0:
            continue
        start = ts - (s.clip_len // 2 - 1) * s.frame_interval
        inds = list(start + np.arange(0, window, s.frame_interval) - 1)
        imgs = [resized[i].astype(np.float32) for i in inds]
        for img in imgs:
            mmcv.imnormalize_(img, **norm)
        x = torch.from_numpy(np.stack(imgs).transpose((3, 0, 1, 2))[np.newaxis])
        sample = ActionDataSample()
        sample.proposals = InstanceData(bboxes=proposal)
        sample.set_metainfo(dict(img_shape=(new_h, new_w)))
        with torch.no_grad():
            scores = model(x, [sample], mode="predict")[0].pred_instances.scores
        boxes = proposal.clone()
        boxes[:, 0::2] /= new_w  # pack_result
        boxes[:, 1::2] /= new_h
        for i in labels:
            for j in range(proposal.shape[0]):
                if scores[j, i] > cfg.action.score_thr:
                    rows.append((int(ts) - 1, j, i, *boxes[j].tolist(), float(scores[j, i])))
    return timestamps, sorted(rows)


def test_detections_equal_the_demo(case, tmp_path):
    cfg, path, frames = case
    result, table, persons, actions, labels = ours(cfg, path)
    timestamps, expected = demo(cfg, frames, persons, actions, labels, tmp_path)
    np.testing.assert_array_equal(result.frame_index_K + 1, timestamps)  # the demo's keyframes
    got = sorted(
        zip(table["frame_index"].to_pylist(), table["person_index"].to_pylist(),
            table["action_id"].to_pylist(), table["x1"].to_pylist(), table["y1"].to_pylist(),
            table["x2"].to_pylist(), table["y2"].to_pylist(), table["score"].to_pylist(),
            strict=True)
    )  # fmt: skip
    assert len(expected) > 20, "the case must have detections to compare"
    assert [g[:3] for g in got] == [e[:3] for e in expected]  # same keyframes, persons, actions
    got_num, exp_num = np.asarray([g[3:] for g in got]), np.asarray([e[3:] for e in expected])
    np.testing.assert_allclose(got_num[:, :4], exp_num[:, :4], rtol=0, atol=2e-6)  # boxes
    np.testing.assert_allclose(got_num[:, 4], exp_num[:, 4], rtol=0, atol=1e-5)  # scores


def test_clips_are_the_demo_frames(case):
    cfg, path, frames = case
    from core.detect.frames import iter_keyframes

    s = cfg.sampling
    h, w = frames[0].shape[:2]
    new_w, new_h = mmcv.rescale_size((w, h), (s.short_side, np.inf))
    blocks = list(iter_keyframes(path, s, None, None))
    c = int(blocks[0].frame_index_K[1])
    clip = blocks[0].clips_KThw3[1]
    for k, off in enumerate(s.clip_offsets()):
        np.testing.assert_array_equal(clip[k], mmcv.imresize(frames[c + off], (new_w, new_h)))
    np.testing.assert_array_equal(blocks[0].keyframes[1], frames[c])
