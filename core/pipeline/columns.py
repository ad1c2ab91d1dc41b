"""Names of the columns that flow between the extract pipeline's stages (one row per video).

Table columns that reach Parquet are in :mod:`core.io.tables`; these are the in-flight ones.
Shape suffixes: C feature channels, T positions, P proposals per video.
"""

FEATS = "feats_CT"  # float32 (C, T): the video's features at T positions (zeros if it failed)
OK = "ok"  # bool: the video decoded and has features
TRANSIENT = "transient"  # bool: it failed for a passing reason (storage): left for a later run
ERROR_STAGE = "error_stage"  # where a failed video failed ("read", "decode"), "" if ok
ERROR_TYPE = "error_type"  # the failure's kind (VideoDecodeError reasons, not_found, ...)
ERROR_MESSAGE = "error_message"
FPS = "fps"
NUM_FRAMES = "num_frames"
DURATION = "duration"  # seconds decoded
NUM_SNIPPETS = "num_snippets"  # snippets before rescaling to T
NUM_DECODE_ERRORS = "num_decode_errors"  # int32 damaged packets skipped (0: a clean video)
# the localizer's proposals, columns t_start, t_end, score, label_score (seconds, seconds,
# BMN confidence, detection confidence)
PROPOSALS = "proposals_P_start_end_score_labelscore"
PROPOSAL_LABEL = "proposal_label_P"  # int32 class index, -1 without a head
PROPOSAL_VALID = "proposal_valid_P"  # bool: a real proposal (fewer than P may exist)
# the writer's summary rows
NUM_PROPOSALS = "num_proposals"  # int32
COMMITTED = "committed"  # bool: this batch published the video's rows
BATCH_ID = "batch_id"
# where the time went, float64 seconds per row: the share of its stage's call that this row
# took (the call's seconds over its rows), so that sums over rows are busy times per stage
SECONDS_FEATURES = "seconds_features"  # the feature actor's call: fetch, decode, recognizer
SECONDS_RECOGNIZER = "seconds_recognizer"  # of which the recognizer (GPU work and waiting)
SECONDS_LOCALIZER = "seconds_localizer"
SECONDS_WRITE = "seconds_write"  # the writer: Parquet and commit
DECODER = "decoder"  # "cpu" or "nvdec": what decoded the video
ACTOR_START_SECONDS = "actor_start_seconds"  # an actor's start-up, on its first row only
# when things happened, float64 Unix seconds (0 where not set): for the job's progress stream
FEATURES_DONE_AT = "features_done_at"  # the feature actor finished the row's call
ACTOR_READY_AT = "actor_ready_at"  # a feature actor became ready, on its first row only
LOCALIZER_READY_AT = "localizer_ready_at"  # the localizer actor became ready, its first row
TIMES = (FEATURES_DONE_AT, ACTOR_READY_AT, LOCALIZER_READY_AT)
BUSY_COLUMNS = {
    "features": SECONDS_FEATURES,
    "recognizer": SECONDS_RECOGNIZER,
    "localizer": SECONDS_LOCALIZER,
    "write": SECONDS_WRITE,
}
"""Stage name → its seconds column (``decode`` is features less recognizer)."""
