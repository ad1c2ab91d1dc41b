"""The detect models' ``dtype``: checked in the config, autocast on CUDA only, part of a run's
fingerprint (a rerun at another precision cannot mix its rows with a float32 run's)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from core import config
from core.detect.config import DetectConfig
from core.detect.driver import fingerprint
from core.detect.models import autocast

CONFIG = "configs/detect/demo.py"


def test_dtype_defaults_to_float32_and_is_checked():
    cfg, _ = config.load(CONFIG, DetectConfig)
    assert (cfg.detector.dtype, cfg.action.dtype) == ("float32", "float32")
    cfg, _ = config.load(
        CONFIG, DetectConfig, {"detector.dtype": "float16", "action.dtype": "bfloat16"}
    )
    assert (cfg.detector.dtype, cfg.action.dtype) == ("float16", "bfloat16")
    with pytest.raises(config.ConfigError, match="dtype"):
        config.load(CONFIG, DetectConfig, {"action.dtype": "float64"})


def test_autocast_only_on_cuda_and_below_float32():
    assert isinstance(autocast("bfloat16", "cpu"), contextlib.nullcontext)
    assert isinstance(autocast("float32", "cuda"), contextlib.nullcontext)
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else contextlib.nullcontext():
        ctx = autocast("float16", "cuda")
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.float16


def test_dtype_changes_the_fingerprint():
    base, _ = config.load(CONFIG, DetectConfig)
    half, _ = config.load(CONFIG, DetectConfig, {"detector.dtype": "float16"})
    bf16, _ = config.load(CONFIG, DetectConfig, {"action.dtype": "bfloat16"})
    prints = {fingerprint(c, "d", "a") for c in (base, half, bf16)}
    assert len(prints) == 3
