"""Fixtures for the CUDA tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def exact_fp32():
    """float32 matmuls and convolutions without TF32 for the test, as on the CPU."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
