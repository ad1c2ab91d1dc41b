"""Video corpora the system is tested and demonstrated on.

:mod:`core.corpus.synthetic` renders H.264 videos of coloured shapes doing known actions at
known times over a moving textured background, with ActivityNet v1.3 annotations: ground truth
for the whole pipeline (extract, train, evaluate) without downloading a data set.
"""

from core.corpus.synthetic import (
    CLASS_TABLE,
    DEFAULT_FPS,
    DEFAULT_MAX_DURATION,
    DEFAULT_MIN_DURATION,
    DEFAULT_RESOLUTIONS,
    MAX_CLASSES,
    ActionClass,
    ActionInstance,
    CorpusArgumentError,
    CorpusSummary,
    VideoSpec,
    annotations_json,
    class_names,
    make_corpus,
    manifest_csv,
    plan_corpus,
    render_frames,
    write_video,
)

__all__ = [
    "CLASS_TABLE",
    "DEFAULT_FPS",
    "DEFAULT_MAX_DURATION",
    "DEFAULT_MIN_DURATION",
    "DEFAULT_RESOLUTIONS",
    "MAX_CLASSES",
    "ActionClass",
    "ActionInstance",
    "CorpusArgumentError",
    "CorpusSummary",
    "VideoSpec",
    "annotations_json",
    "class_names",
    "make_corpus",
    "manifest_csv",
    "plan_corpus",
    "render_frames",
    "write_video",
]
