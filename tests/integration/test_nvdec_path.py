"""The NVDEC decoder path on the CPU: real videos, PyNvVideoCodec replaced by a stand-in that
serves each frame's NV12 planes (decoded by PyAV) by index, as ``SimpleDecoder`` does on a GPU.

What runs for real: the scan (frame count, times, rotation, colour tags), the shared snippet
index function, decoding by index in chunks, the NV12 to RGB conversion with FFmpeg's matrix
rule, the resize and crop in torch, the per-video CPU fallback and the session reuse. Only
the hardware decode is stood in for (``tests/gpu/test_nvdec_parity.py`` runs the real one).
"""

from __future__ import annotations

import dataclasses
import types

import av
import numpy as np
import pytest
import torch

from core.video import SamplingConfig, SnippetDecoder, VideoDecodeError, iter_snippets, nvdec
from core.video.gpu_transforms import nv12_to_rgb
from tests.integration import videos

pytestmark = pytest.mark.integration

TSN = SamplingConfig(clip_len=1, clip_interval=16, short_side=64, crop_size=56, batch_size=3)
SLOWONLY = SamplingConfig(
    clip_len=4, clip_interval=8, frame_interval=4, short_side=48, crop_size=48, batch_size=2
)


def nv12_planes(frame: av.VideoFrame) -> np.ndarray:
    """A yuv420p frame's samples in NV12 layout, ``(3 * H / 2, W)`` uint8."""
    h, w = frame.height, frame.width
    shapes = [(h, w), (h // 2, w // 2), (h // 2, w // 2)]
    y, u, v = (
        np.frombuffer(plane, np.uint8).reshape(rows, plane.line_size)[:, :cols]
        for plane, (rows, cols) in zip(frame.planes, shapes, strict=True)
    )
    return np.concatenate([y, np.stack([u, v], axis=-1).reshape(h // 2, w)])


class StandInDecoder:
    """PyNvVideoCodec's ``SimpleDecoder`` interface over PyAV: NV12 frames in display order."""

    opened: list[str] = []
    reconfigured: list[str] = []
    requests: list[list[int]] = []

    def __init__(self, path, **kwargs) -> None:
        assert kwargs["output_color_type"] == "NATIVE"
        StandInDecoder.opened.append(path)
        self._load(path)

    def _load(self, path) -> None:
        with av.open(path) as container:
            self.frames = [nv12_planes(f) for f in container.decode(video=0)]

    def __len__(self) -> int:
        return len(self.frames)

    def reconfigure_decoder(self, path) -> None:
        StandInDecoder.reconfigured.append(path)
        self._load(path)

    def get_batch_frames_by_index(self, indices):
        StandInDecoder.requests.append(list(indices))
        return [torch.from_numpy(self.frames[i]) for i in indices]


@pytest.fixture
def decoder(monkeypatch) -> SnippetDecoder:
    """``sampling.decoder='nvdec'`` on a pretend GPU whose frames lie in host memory."""
    fake = types.SimpleNamespace(
        SimpleDecoder=StandInDecoder, OutputColorType=types.SimpleNamespace(NATIVE="NATIVE")
    )
    monkeypatch.setitem(__import__("sys").modules, "PyNvVideoCodec", fake)
    monkeypatch.setattr(nvdec, "machine_unsupported_reason", lambda: None)
    for log in (StandInDecoder.opened, StandInDecoder.reconfigured, StandInDecoder.requests):
        log.clear()
    out = SnippetDecoder(dataclasses.replace(TSN, decoder="nvdec"), device="cuda:0")
    assert out.kind == "nvdec"
    out.session.device = torch.device("cpu")
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("nvdec_cpu")
    plain = videos.make_video(folder / "square.mp4", 96, 96, seconds=1)
    return {
        "h264": videos.make_video(folder / "a.mp4", 160, 120, fps=25, seconds=3),
        "vfr": videos.make_vfr_video(folder / "vfr.mp4"),
        "short": videos.make_video(folder / "short.mp4", 160, 120, seconds=0.2),
        "full_range": videos.make_video(folder / "j.mp4", 160, 120, seconds=1, pix_fmt="yuvj420p"),
        "rot90": videos.set_rotation(plain, folder / "rot90.mp4", 90),
        "mpeg4": videos.make_video(folder / "m.mp4", 160, 120, seconds=1, codec="mpeg4"),
    }


def _cat(batches, field):
    return np.concatenate([getattr(b, field) for b in batches])


@pytest.mark.parametrize("name", ["h264", "vfr", "short", "full_range", "rot90"])
@pytest.mark.parametrize("cfg", [TSN, SLOWONLY], ids=["tsn", "slowonly"])
def test_same_snippets_as_the_cpu_path(decoder, corpus, name, cfg):
    decoder.cfg = dataclasses.replace(cfg, decoder="nvdec")
    cpu = list(iter_snippets(corpus[name], cfg))
    gpu = list(decoder.iter_snippets(corpus[name]))
    assert all(isinstance(b.clips_NTHWC, torch.Tensor) for b in gpu)
    assert [len(b.snippet_index_N) for b in gpu] == [len(b.snippet_index_N) for b in cpu]
    assert [b.is_last for b in gpu] == [b.is_last for b in cpu]
    for field in ("snippet_index_N", "center_frame_N"):
        np.testing.assert_array_equal(_cat(gpu, field), _cat(cpu, field))
    np.testing.assert_allclose(_cat(gpu, "center_time_N"), _cat(cpu, "center_time_N"), atol=1e-9)
    assert gpu[-1].num_frames == cpu[-1].num_frames
    assert gpu[-1].duration == pytest.approx(cpu[-1].duration, abs=1e-9)
    gpu_NTHWC = torch.cat([b.clips_NTHWC for b in gpu]).numpy()
    cpu_NTHWC = _cat(cpu, "clips_NTHWC")
    assert gpu_NTHWC.shape == cpu_NTHWC.shape and gpu_NTHWC.dtype == np.uint8
    assert np.abs(gpu_NTHWC.astype(int) - cpu_NTHWC).mean() < 1.5  # upright, same colours


def test_frames_are_asked_for_by_index_in_chunks_of_a_batch(decoder, corpus):
    decoder.cfg = dataclasses.replace(SLOWONLY, decoder="nvdec")
    list(decoder.iter_snippets(corpus["h264"]))
    requests = StandInDecoder.requests
    assert max(len(r) for r in requests) <= SLOWONLY.batch_size
    assert all(r == sorted(set(r)) for r in requests)  # each frame once, in order, per call


def test_one_decoder_session_for_every_video(decoder, corpus):
    for name in ("h264", "vfr", "short"):
        list(decoder.iter_snippets(corpus[name]))
    assert len(StandInDecoder.opened) == 1
    assert StandInDecoder.reconfigured == [corpus["vfr"], corpus["short"]]


def test_a_codec_nvdec_does_not_take_is_decoded_on_the_cpu(decoder, corpus, caplog):
    batches = list(decoder.iter_snippets(corpus["mpeg4"]))
    assert all(isinstance(b.clips_NTHWC, np.ndarray) for b in batches)
    np.testing.assert_array_equal(
        _cat(batches, "clips_NTHWC"), _cat(list(iter_snippets(corpus["mpeg4"], TSN)), "clips_NTHWC")
    )
    assert "codec mpeg4" in caplog.text and StandInDecoder.opened == []


def test_a_file_pynvvideocodec_cannot_open_is_decoded_on_the_cpu(decoder, corpus, monkeypatch):
    def refuse(path, **kwargs):
        raise RuntimeError("Elementary streams not supported")

    monkeypatch.setattr(decoder.session.nvc, "SimpleDecoder", refuse)
    batches = list(decoder.iter_snippets(corpus["h264"]))
    assert isinstance(batches[0].clips_NTHWC, np.ndarray)
    assert len(_cat(batches, "snippet_index_N")) == TSN.num_snippets(75)


def test_broken_videos_raise_the_cpu_paths_reasons(decoder, tmp_path):
    for name, (path, reason) in videos.make_broken_videos(tmp_path).items():
        with pytest.raises(VideoDecodeError) as err:
            list(decoder.iter_snippets(path))
        assert err.value.reason == reason, name


def test_nv12_to_rgb_follows_ffmpegs_matrix_rule(tmp_path):
    """Untagged and BT.709-tagged HD, MPEG and JPEG range: within a level or so of PyAV's
    ``rgb24`` (the CPU path), and far from it with the other matrix."""
    untagged = videos.make_video(tmp_path / "hd.mp4", 1280, 720, seconds=0.1)
    full = videos.make_video(tmp_path / "j.mp4", 320, 240, seconds=0.1, pix_fmt="yuvj420p")
    for path in (untagged, full):
        with av.open(path) as container:
            frame = next(container.decode(video=0))
        nv12 = torch.from_numpy(nv12_planes(frame))[None]
        full_range = frame.format.name == "yuvj420p"
        rgb_HW3 = nv12_to_rgb(nv12, frame.colorspace, full_range)[0].permute(1, 2, 0).numpy()
        cpu_HW3 = frame.to_ndarray(format="rgb24").astype(int)
        assert np.abs(rgb_HW3 - cpu_HW3).mean() < 1.0
        assert np.abs(rgb_HW3 - cpu_HW3).max() <= 3
        as_709 = nv12_to_rgb(nv12, 1, full_range)[0].permute(1, 2, 0).numpy()
        assert np.abs(as_709 - cpu_HW3).mean() > 3


def test_extractor_takes_a_tensor_as_it_takes_an_array():
    pytest.importorskip("mmcv")
    from core.features import ExtractorConfig, presets
    from core.features.extractor import FeatureExtractor

    extractor = FeatureExtractor(ExtractorConfig(model=presets.demo_recognizer(), batch_size=2))
    clips = np.random.default_rng(0).integers(0, 256, (5, 1, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        extractor.extract(torch.from_numpy(clips)), extractor.extract(clips)
    )
