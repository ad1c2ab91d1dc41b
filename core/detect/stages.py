"""The detect pipeline's Ray Data stages: a decoding function and two actors.

Rows are keyframes (``core.detect.schema`` names the columns): :func:`decode_videos` turns each
video row into its keyframe rows (the keyframe, its clip) and one ``end`` row with the video's
outcome; :class:`PersonBoxes` (actor pool) adds the persons of each keyframe, batched across
keyframes of many videos, and drops the keyframe image; :class:`ActionScores` (actor pool)
adds the label map's action scores of each person, batched across clips and boxes of many
videos, and drops the clip. What leaves is small (boxes and scores), for the writer.

Shape legend: P persons per keyframe (padded to ``detector.max_persons``), L label-map classes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from core import storage
from core.detect import schema as t
from core.detect.config import DetectConfig
from core.io.tables import URI, VIDEO_ID

log = logging.getLogger(__name__)


def _device(num_gpus: float) -> str:
    import torch

    return "cuda" if num_gpus > 0 and torch.cuda.is_available() else "cpu"


def _rows(vid: str, uri: str, n: int, **cols) -> dict[str, np.ndarray]:
    """A block of ``n`` rows of one video: every in-flight column, defaults where not given."""
    base = {
        VIDEO_ID: np.full(n, vid, dtype=object),
        URI: np.full(n, uri, dtype=object),
        t.IS_END: np.zeros(n, bool),
        t.FRAME_INDEX: np.full(n, -1, np.int64),
        t.TIMESTAMP: np.zeros(n, np.float64),
        t.KEYFRAME: np.zeros((n, 1, 1, 3), np.uint8),
        t.CLIP: np.zeros((n, 1, 1, 1, 3), np.uint8),
        t.NUM_KEYFRAMES: np.zeros(n, np.int32),
        t.OK: np.ones(n, bool),
        t.ERROR_STAGE: np.full(n, "", dtype=object),
        t.ERROR_TYPE: np.full(n, "", dtype=object),
        t.ERROR_MESSAGE: np.full(n, "", dtype=object),
        t.FPS: np.zeros(n, np.float64),
        t.NUM_FRAMES: np.zeros(n, np.int64),
        t.DURATION: np.zeros(n, np.float64),
    }
    base.update(cols)
    return base


def decode_videos(
    batch: dict[str, np.ndarray], cfg: DetectConfig
) -> Iterator[dict[str, np.ndarray]]:
    """Ray Data generator UDF: video rows in, keyframe blocks and one end row per video out."""
    from core.detect.frames import DecodeFacts, iter_keyframes
    from core.video import VideoDecodeError

    for vid, uri in zip(batch[VIDEO_ID], batch[URI], strict=True):
        vid, uri = str(vid), str(uri)
        facts = DecodeFacts()
        end = {}
        try:
            with storage.local_path(uri) as path:
                for block in iter_keyframes(path, cfg.sampling, cfg.detector.short_side, facts):
                    K = len(block.frame_index_K)
                    yield _rows(
                        vid,
                        uri,
                        K,
                        **{
                            t.FRAME_INDEX: block.frame_index_K,
                            t.TIMESTAMP: block.timestamp_K,
                            t.KEYFRAME: np.stack(block.keyframes),
                            t.CLIP: block.clips_KThw3,
                        },
                    )
        except VideoDecodeError as e:
            end = {t.OK: np.zeros(1, bool), t.ERROR_STAGE: _obj("decode"), t.ERROR_TYPE: _obj(e.reason),
                   t.ERROR_MESSAGE: _obj(e.message[:2000])}  # fmt: skip
        except FileNotFoundError as e:
            end = {t.OK: np.zeros(1, bool), t.ERROR_STAGE: _obj("read"), t.ERROR_TYPE: _obj("not_found"),
                   t.ERROR_MESSAGE: _obj(str(e)[:2000])}  # fmt: skip
        except Exception as e:  # noqa: BLE001  (any per-video failure is an error row)
            log.exception("decoding %s failed", uri)
            end = {t.OK: np.zeros(1, bool), t.ERROR_STAGE: _obj("decode"),
                   t.ERROR_TYPE: _obj(type(e).__name__), t.ERROR_MESSAGE: _obj(str(e)[:2000])}  # fmt: skip
        yield _rows(
            vid,
            uri,
            1,
            **{
                t.IS_END: np.ones(1, bool),
                t.NUM_KEYFRAMES: np.full(1, facts.num_keyframes, np.int32),
                t.FPS: np.full(1, facts.info.fps if facts.info else 0.0),
                t.NUM_FRAMES: np.full(1, facts.num_frames, np.int64),
                t.DURATION: np.full(1, facts.duration),
                **end,
            },
        )


def _obj(value: str) -> np.ndarray:
    return np.asarray([value], dtype=object)


def _items(column) -> list[np.ndarray]:
    """A tensor column as a list of arrays (Ray hands ragged columns over as object arrays)."""
    return [np.asarray(x) for x in column]


class PersonBoxes:
    """Actor: the persons of each keyframe (mmdet detector), boxes in the clip's pixels as the
    demo scales them (``det[:, 0:4:2] *= w_ratio``); the writer normalises them."""

    def __init__(self, cfg: DetectConfig) -> None:
        from core.detect.models import PersonDetector

        self.cfg = cfg
        self.detector = PersonDetector(
            cfg.detector, _device(cfg.detector.num_gpus), cfg.seed, cfg.checkpoint.allow_pickle
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        B, P = len(batch[t.IS_END]), self.cfg.detector.max_persons
        boxes_BP4 = np.zeros((B, P, 4), np.float32)
        scores_BP = np.zeros((B, P), np.float32)
        count_B = np.zeros(B, np.int32)
        clip_wh_B2 = np.zeros((B, 2), np.int32)
        rows = np.nonzero(~batch[t.IS_END].astype(bool))[0]
        keyframes = _items(batch[t.KEYFRAME])
        clips = _items(batch[t.CLIP])
        found = self.detector.detect([keyframes[i] for i in rows])
        for i, (boxes_N4, scores_N) in zip(rows, found, strict=True):
            h, w = clips[i].shape[1:3]
            n = len(boxes_N4)
            clip_N4 = to_clip_pixels(boxes_N4, keyframes[i].shape[:2], (h, w))
            boxes_BP4[i, :n], scores_BP[i, :n], count_B[i] = clip_N4, scores_N, n
            clip_wh_B2[i] = (w, h)
        out = {k: v for k, v in batch.items() if k != t.KEYFRAME}
        out.update({t.BOXES: boxes_BP4, t.PERSON_SCORES: scores_BP, t.NUM_PERSONS: count_B,
                    t.CLIP_WH: clip_wh_B2})  # fmt: skip
        return out


def to_clip_pixels(boxes_N4: np.ndarray, keyframe_hw, clip_hw) -> np.ndarray:
    """Boxes found on a keyframe (x1, y1, x2, y2 in its pixels) in the pixels of its clip (the
    demo's ``w_ratio``, ``h_ratio``)."""
    (H, W), (h, w) = keyframe_hw, clip_hw
    clip_N4 = boxes_N4.copy()
    clip_N4[:, 0::2] *= w / W
    clip_N4[:, 1::2] *= h / H
    return clip_N4


class ActionScores:
    """Actor: the label map's action scores of every person in every clip (MMAction2 FastRCNN)."""

    def __init__(self, cfg: DetectConfig, label_ids: list[int]) -> None:
        from core.detect.models import ActionModel

        self.cfg = cfg
        self.label_ids = np.asarray(label_ids, np.int64)
        self.model = ActionModel(
            cfg.action, _device(cfg.action.num_gpus), cfg.seed, cfg.checkpoint.allow_pickle
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        B, P, L = len(batch[t.IS_END]), self.cfg.detector.max_persons, len(self.label_ids)
        scores_BPL = np.zeros((B, P, L), np.float32)
        clips = _items(batch[t.CLIP])
        count_B = batch[t.NUM_PERSONS]
        rows = [i for i in range(B) if count_B[i] > 0]
        boxes = [np.ascontiguousarray(batch[t.BOXES][i, : count_B[i]], np.float32) for i in rows]
        scores = self.model.scores([clips[i] for i in rows], boxes)
        for i, s_NC in zip(rows, scores, strict=True):
            scores_BPL[i, : count_B[i]] = s_NC[:, self.label_ids]
        out = {k: v for k, v in batch.items() if k != t.CLIP}
        out[t.ACTION_SCORES] = scores_BPL
        return out
