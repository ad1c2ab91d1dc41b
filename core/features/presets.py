"""Recognizer presets, read from the config files that production configs inherit.

``configs/_base_/models/*.py`` is the one place where each recognizer's architecture and
checkpoint URL are written; code (tests, benchmarks) that needs a recognizer without a whole
job config reads it from there.
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

MODELS_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs" / "_base_" / "models"


def recognizer(name: str) -> dict[str, Any]:
    """The ``extractor`` section of ``configs/_base_/models/<name>.py`` (model, checkpoint,
    output), e.g. ``recognizer("tsn_r50_kinetics400")["model"]``."""
    from mmengine.config import Config

    path = MODELS_DIR / f"{name}.py"
    if not path.is_file():
        known = sorted(p.stem for p in MODELS_DIR.glob("*.py"))
        raise KeyError(f"no recognizer preset {name!r} in {MODELS_DIR}; known: {known}")
    return copy.deepcopy(Config.fromfile(str(path)).to_dict()["extractor"])


def demo_recognizer() -> dict[str, Any]:
    """The demo's recognizer, ``extractor.model`` of ``configs/extract/demo.py``: TSN with a
    ResNet-18 (512-d pooled, 400 scores), fast on a CPU at 56-112 px."""
    from mmengine.config import Config

    demo = MODELS_DIR.parents[1] / "extract" / "demo.py"
    return copy.deepcopy(Config.fromfile(str(demo)).to_dict()["extractor"]["model"])
