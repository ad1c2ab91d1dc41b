"""The detect job's tables (explicit pyarrow schemas) and the names of the columns that flow
between its Ray Data stages (one row per keyframe, plus one ``end`` row per video).

``detections`` is a contract with analysts; ``errors`` is extract's table
(:data:`core.io.tables.ERRORS_SCHEMA`). Files live under ``<table>/part-<batch>.parquet``
(:mod:`core.io.commits`).
"""

from __future__ import annotations

import pyarrow as pa

from core.io.tables import ERRORS_SCHEMA, RUN_ID, URI, VIDEO_ID

TABLES = ("detections", "errors")

DETECTIONS_SCHEMA = pa.schema(
    [
        pa.field(VIDEO_ID, pa.string(), nullable=False),
        pa.field(URI, pa.string(), nullable=False),
        pa.field("timestamp", pa.float64(), nullable=False),  # keyframe, seconds from frame 0
        pa.field("frame_index", pa.int64(), nullable=False),  # keyframe, 0-based
        pa.field("x1", pa.float32(), nullable=False),  # person box, fractions of width/height
        pa.field("y1", pa.float32(), nullable=False),
        pa.field("x2", pa.float32(), nullable=False),
        pa.field("y2", pa.float32(), nullable=False),
        pa.field("person_score", pa.float32(), nullable=False),  # the detector's confidence
        pa.field("person_index", pa.int32(), nullable=False),  # 0 = the keyframe's best person
        pa.field("action_id", pa.int32(), nullable=False),  # AVA's 1-based action id
        pa.field("action", pa.string(), nullable=False),  # its name in the label map
        pa.field("score", pa.float32(), nullable=False),  # the action's score (sigmoid)
        pa.field("detector_model", pa.string(), nullable=False),  # checkpoint sha256 or "random"
        pa.field("action_model", pa.string(), nullable=False),  # checkpoint sha256 or "random"
        pa.field(RUN_ID, pa.string(), nullable=False),  # the run that wrote the row
    ]
)

__all__ = ["DETECTIONS_SCHEMA", "ERRORS_SCHEMA", "TABLES"]

# in-flight columns (one row per keyframe; ``IS_END`` rows close a video)
IS_END = "is_end"  # bool: the video's last row, carrying its outcome and facts
FRAME_INDEX = "frame_index"  # int64 keyframe index (-1 on end rows)
TIMESTAMP = "timestamp"  # float64 seconds
KEYFRAME = "keyframe_HW3"  # uint8 RGB, what the detector sees
CLIP = "clip_Thw3"  # uint8 RGB clip, frames at sampling.short_side
CLIP_WH = "clip_wh_2"  # int32 (w, h) of the clip's frames: BOXES are in these pixels
NUM_KEYFRAMES = "num_keyframes"  # int32, on end rows
OK = "ok"
ERROR_STAGE, ERROR_TYPE, ERROR_MESSAGE = "error_stage", "error_type", "error_message"
FPS, NUM_FRAMES, DURATION = "fps", "num_frames", "duration"
NUM_PERSONS = "num_persons"  # int32
BOXES = "boxes_P4"  # float32 (P, 4) person boxes in clip pixels, P = detector.max_persons
PERSON_SCORES = "person_scores_P"  # float32 (P,)
ACTION_SCORES = "action_scores_PL"  # float32 (P, L): scores of the label map's L classes
