"""sampling.decoder: the config value, which decoder an actor gets and why, which streams go to
NVDEC, and the one snippet index function both decoders follow (recorded expectations)."""

from __future__ import annotations

import logging

import av
import numpy as np
import pytest

from core.config import ConfigError, build
from core.video import NvdecUnavailableError, SamplingConfig, SnippetDecoder, nvdec, snippet_frames
from core.video.sample import SnippetAssembler, VideoInfo

pytestmark = pytest.mark.unit


# ----------------------------------------------------------------------------- config


def test_decoder_defaults_to_cpu_and_rejects_unknown_values():
    assert SamplingConfig().decoder == "cpu"
    assert build(SamplingConfig, {"decoder": "auto"}).decoder == "auto"
    with pytest.raises(ConfigError, match="decoder"):
        build(SamplingConfig, {"decoder": "gpu"})
    with pytest.raises(ValueError, match="decoder must be one of"):
        SamplingConfig(decoder="cuda")


# ----------------------------------------------------------------------------- machine


@pytest.fixture
def machine(monkeypatch):
    """A machine whose CUDA, PyNvVideoCodec and libnvcuvid each tests switch on or off."""
    import ctypes
    import importlib.util

    import torch

    state = {"cuda": True, "package": True, "nvcuvid": True}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: state["cuda"])
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        if name == "PyNvVideoCodec":
            return object() if state["package"] else None
        return real_find_spec(name, *args)

    def cdll(name, *args, **kwargs):
        if name == "libnvcuvid.so.1" and not state["nvcuvid"]:
            raise OSError(f"{name}: cannot open shared object file")
        return object()

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(ctypes, "CDLL", cdll)
    return state


@pytest.mark.parametrize(
    "missing, words",
    [("cuda", "no CUDA GPU"), ("package", "PyNvVideoCodec is not installed"),
     ("nvcuvid", "libnvcuvid.so.1")],
)  # fmt: skip
def test_auto_falls_back_to_the_cpu_saying_why_and_nvdec_refuses(machine, caplog, missing, words):
    machine[missing] = False
    assert words in nvdec.machine_unsupported_reason()
    with caplog.at_level(logging.WARNING, logger="core.video.backend"):
        decoder = SnippetDecoder(SamplingConfig(decoder="auto"), device="cuda")
    assert decoder.kind == "cpu"
    assert words in caplog.text
    with pytest.raises(NvdecUnavailableError, match=words):
        SnippetDecoder(SamplingConfig(decoder="nvdec"), device="cuda")


def test_a_recognizer_on_the_cpu_never_gets_nvdec(machine):
    assert SnippetDecoder(SamplingConfig(decoder="auto"), device="cpu").kind == "cpu"
    with pytest.raises(NvdecUnavailableError, match="recognizer runs on cpu"):
        SnippetDecoder(SamplingConfig(decoder="nvdec"), device="cpu")


def test_cpu_decoder_checks_nothing(machine):
    machine.update(cuda=False, package=False, nvcuvid=False)
    assert SnippetDecoder(SamplingConfig(decoder="cpu"), device="cuda").kind == "cpu"


# ----------------------------------------------------------------------------- streams


@pytest.mark.parametrize(
    "codec, pix_fmt, size, words",
    [
        ("h264", "yuv420p", (1280, 720), None),
        ("hevc", "yuvj420p", (1920, 1080), None),
        ("vp9", "yuv420p", (320, 240), None),
        ("av1", "nv12", (3840, 2160), None),
        ("mpeg4", "yuv420p", (320, 240), "codec mpeg4"),
        ("h264", "yuv420p10le", (1280, 720), "not 8-bit 4:2:0"),
        ("h264", "yuv444p", (1280, 720), "not 8-bit 4:2:0"),
        ("hevc", None, (1280, 720), "not 8-bit 4:2:0"),
        ("vp9", "yuv420p", (160, 120), "outside NVDEC"),
        ("h264", "yuv420p", (8192, 4320), "outside NVDEC"),
        ("h264", "yuv420p", (321, 240), "odd side"),
    ],
)
def test_which_streams_go_to_nvdec(codec, pix_fmt, size, words):
    reason = nvdec.stream_unsupported_reason(codec, pix_fmt, *size)
    if words is None:
        assert reason is None
    else:
        assert words in reason


# ----------------------------------------------------------------------------- positions

TSN = SamplingConfig(clip_len=1, clip_interval=16, frame_interval=1)
SLOWONLY = SamplingConfig(clip_len=8, clip_interval=16, frame_interval=8, crop_size=224)
EVEN = SamplingConfig(clip_len=2, clip_interval=16, frame_interval=1)


@pytest.mark.parametrize(
    "cfg, num_frames, centers, frames",
    [
        (TSN, 40, [8, 24], [[8], [24]]),
        (TSN, 9, [8], [[8]]),
        (TSN, 8, [3], [[3]]),  # too short for the first centre: its middle frame
        (TSN, 1, [0], [[0]]),
        (TSN, 0, [], np.zeros((0, 1))),
        (EVEN, 16, [8], [[7, 8]]),
        (SLOWONLY, 40, [8, 24], [[0, 0, 0, 0, 8, 16, 24, 32], [0, 0, 8, 16, 24, 32, 39, 39]]),
        (SLOWONLY, 5, [2], [[0, 0, 0, 0, 2, 4, 4, 4]]),
    ],
)
def test_snippet_frames_recorded(cfg, num_frames, centers, frames):
    center_N, frames_NT = snippet_frames(cfg, num_frames)
    np.testing.assert_array_equal(center_N, centers)
    np.testing.assert_array_equal(frames_NT, np.asarray(frames).reshape(-1, cfg.clip_len))
    assert center_N.dtype == frames_NT.dtype == np.int64
    assert cfg.num_snippets(num_frames) == len(centers)


def _numbered_frame(i: int) -> av.VideoFrame:
    """A 16 x 16 frame whose every pixel is ``i``: a crop tells which frame it came from."""
    return av.VideoFrame.from_ndarray(np.full((16, 16, 3), i, np.uint8), format="rgb24")


@pytest.mark.parametrize("clip_len, clip_interval, frame_interval", [(1, 16, 1), (8, 16, 8), (4, 4, 2), (3, 5, 2)])  # fmt: skip
def test_streaming_assembler_cuts_what_snippet_frames_names(
    clip_len, clip_interval, frame_interval
):
    """The CPU decoder's streaming assembler and the NVDEC decoder's index list agree for every
    length from 1 to 70 frames."""
    cfg = SamplingConfig(
        clip_len=clip_len, clip_interval=clip_interval, frame_interval=frame_interval,
        short_side=16, crop_size=16,
    )  # fmt: skip
    frames = [_numbered_frame(i) for i in range(70)]
    for num_frames in range(1, 71):
        assembler = SnippetAssembler(cfg, fps=25.0)
        snippets = []
        for i in range(num_frames):
            snippets.extend(assembler.add(i, frames[i]))
        snippets.extend(assembler.finish())
        batch = assembler.batch(snippets, VideoInfo(25.0, 0, 0.0, 16, 16, "h264"), True)
        center_N, frames_NT = snippet_frames(cfg, num_frames)
        np.testing.assert_array_equal(batch.center_frame_N, center_N, err_msg=str(num_frames))
        np.testing.assert_array_equal(batch.clips_NTHWC[:, :, 0, 0, 0], frames_NT)
