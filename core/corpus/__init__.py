"""Video corpora the system is tested and demonstrated on.

A synthetic corpus: H.264 videos of coloured shapes doing known actions at known times over a
moving textured background, with ActivityNet v1.3 annotations, ground truth for the whole
pipeline (extract, train, evaluate) without downloading a data set. One module per step:

* :mod:`~core.corpus.classes`: the action class table, ``(motion, colour, shape)`` triples.
* :mod:`~core.corpus.plan`: which videos, of what size, rate and length, hold which action
  instances (every random choice, seeded by ``(seed, video index)``; nothing rendered).
* :mod:`~core.corpus.render`: one planned video's RGB frames.
* :mod:`~core.corpus.encode`: frames to an H.264 MP4 with PyAV's libx264.
* :mod:`~core.corpus.write`: the corpus on storage: videos rendered in a process pool,
  ``annotations.json`` and ``manifest.csv`` (:func:`make_corpus`).
"""

from core.corpus.classes import (
    CLASS_TABLE,
    MAX_CLASSES,
    ActionClass,
    CorpusArgumentError,
    class_names,
)
from core.corpus.encode import write_video
from core.corpus.plan import (
    DEFAULT_FPS,
    DEFAULT_MAX_DURATION,
    DEFAULT_MIN_DURATION,
    DEFAULT_RESOLUTIONS,
    ActionInstance,
    VideoSpec,
    plan_corpus,
)
from core.corpus.render import render_frames
from core.corpus.write import (
    MANIFEST_COLUMNS,
    CorpusSummary,
    annotations_json,
    make_corpus,
    manifest_csv,
)

__all__ = [
    "CLASS_TABLE",
    "DEFAULT_FPS",
    "DEFAULT_MAX_DURATION",
    "DEFAULT_MIN_DURATION",
    "DEFAULT_RESOLUTIONS",
    "MANIFEST_COLUMNS",
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
