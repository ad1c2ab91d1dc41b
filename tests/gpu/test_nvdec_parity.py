"""NVDEC against the CPU decoder on the same videos (skipped without CUDA and PyNvVideoCodec).

Both decoders must cut the same snippets: identical positions, centre frames, times, frame
counts and durations, and the same error reasons for files that are not videos. Pixels differ
a little (NVDEC's YUV to RGB conversion is not FFmpeg's; torch resamples in float32, OpenCV in
11-bit fixed point), so clips are compared by their mean absolute difference,
``FRAME_MEAN_ABS`` levels of 255 at most, and features by
``assert_allclose(rtol=FEAT_RTOL, atol=FEAT_ATOL * max |feature|)`` on random-weight
recognizers, whose features react to pixels as much as trained ones do. With ``NVDEC_RESULTS``
set, the measured gaps are written there as JSON.

The 720p pair covers the YUV matrix: FFmpeg reads a stream without a matrix tag as BT.601,
NVDEC's own RGB converter as BT.709 once it is HD (5.4 levels apart on these crops), which is
why the NVDEC path takes NV12 and converts it with FFmpeg's rule
(:func:`core.video.gpu_transforms.nv12_to_rgb`).
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("needs CUDA", allow_module_level=True)
pytest.importorskip("PyNvVideoCodec")
pytest.importorskip("mmcv")

from core.features import ExtractorConfig, presets  # noqa: E402
from core.features.extractor import FeatureExtractor  # noqa: E402
from core.video import (  # noqa: E402
    SamplingConfig,
    SnippetDecoder,
    VideoDecodeError,
    iter_snippets,
    snippet_frames,
)
from tests.integration import videos  # noqa: E402

pytestmark = pytest.mark.gpu

FRAME_MEAN_ABS = 2.0
"""Largest mean absolute difference of NVDEC's crops from the CPU's, in levels of 255."""
FEAT_RTOL, FEAT_ATOL = 0.05, 0.05
"""Feature tolerance: relative, and absolute as a fraction of the largest CPU feature."""

TSN = SamplingConfig(clip_len=1, clip_interval=16, short_side=128, crop_size=112, batch_size=4)
SLOWONLY = SamplingConfig(
    clip_len=4, clip_interval=8, frame_interval=4, short_side=96, crop_size=96, batch_size=5
)
RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("nvdec")
    out = {
        "h264_bframes": videos.make_video(folder / "a.mp4", 320, 240, fps=25, seconds=3),
        "h264_720p": videos.make_video(folder / "b.mp4", 1280, 720, fps=30, seconds=2),
        "h264_vfr": videos.make_vfr_video(folder / "vfr.mp4"),
        "h264_short": videos.make_video(folder / "short.mp4", 160, 120, fps=25, seconds=0.2),
        "h264_full_range": videos.make_video(
            folder / "j.mp4", 320, 240, seconds=1, pix_fmt="yuvj420p"
        ),
        "vp9_webm": videos.make_video(
            folder / "c.webm", 320, 240, seconds=2, codec="libvpx-vp9", extra=("-b:v", "1M")
        ),
    }
    out["h264_720p_bt709"] = _make_bt709_video(folder / "tagged.mp4", 1280, 720, 45)
    plain = videos.make_video(folder / "square.mp4", 240, 240, seconds=1)
    out["h264_rot90"] = videos.set_rotation(plain, folder / "rot90.mp4", 90)
    return out


@pytest.fixture(scope="module")
def gpu_decoder() -> SnippetDecoder:
    """One decoder for every video of the module: its NVDEC session is reused."""
    decoder = SnippetDecoder(dataclasses.replace(TSN, decoder="nvdec"), device="cuda")
    assert decoder.kind == "nvdec"
    return decoder


def _make_bt709_video(path, width: int, height: int, num_frames: int) -> str:
    """H.264 whose frames and VUI say BT.709 (as HD sources do)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.colorspace = stream.codec_context.color_primaries = 1
        stream.codec_context.color_trc = 1
        for i in range(num_frames):
            rgb = videos.pattern_frame(i, width, height, 30)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709")
            frame.colorspace, frame.pts = 1, i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return str(path)


def read(batches) -> tuple[list, np.ndarray]:
    batches = list(batches)
    clips = [b.clips_NTHWC for b in batches]
    if isinstance(clips[0], torch.Tensor):
        assert all(c.is_cuda and c.dtype == torch.uint8 for c in clips)
        clips = [c.cpu().numpy() for c in clips]
    return batches, np.concatenate(clips)


@pytest.fixture(autouse=True, scope="module")
def write_results():
    yield
    if os.environ.get("NVDEC_RESULTS"):
        with open(os.environ["NVDEC_RESULTS"], "w") as f:
            json.dump(RESULTS, f, indent=2, sort_keys=True)


@pytest.mark.parametrize("cfg_name", ["tsn", "slowonly"])
@pytest.mark.parametrize(
    "name",
    ["h264_bframes", "h264_720p_bt709", "h264_720p", "h264_vfr", "h264_short", "h264_full_range",
     "vp9_webm", "h264_rot90"],
)  # fmt: skip
def test_same_snippets_and_close_frames(corpus, gpu_decoder, name, cfg_name):
    cfg = dict(tsn=TSN, slowonly=SLOWONLY)[cfg_name]
    gpu_decoder.cfg = dataclasses.replace(cfg, decoder="nvdec")
    cpu_batches, cpu_NTHWC = read(iter_snippets(corpus[name], cfg))
    gpu_batches, gpu_NTHWC = read(gpu_decoder.iter_snippets(corpus[name]))
    assert isinstance(gpu_batches[0].clips_NTHWC, torch.Tensor), "decoded on the CPU"
    assert [len(b.snippet_index_N) for b in gpu_batches] == [
        len(b.snippet_index_N) for b in cpu_batches
    ]
    for field in ("snippet_index_N", "center_frame_N"):
        cat = [np.concatenate([getattr(b, field) for b in bs]) for bs in (cpu_batches, gpu_batches)]
        np.testing.assert_array_equal(cat[1], cat[0], err_msg=field)
    cpu_t = np.concatenate([b.center_time_N for b in cpu_batches])
    gpu_t = np.concatenate([b.center_time_N for b in gpu_batches])
    np.testing.assert_allclose(gpu_t, cpu_t, rtol=0, atol=1e-9)
    last_cpu, last_gpu = cpu_batches[-1], gpu_batches[-1]
    assert last_gpu.is_last and last_gpu.num_frames == last_cpu.num_frames
    assert last_gpu.duration == pytest.approx(last_cpu.duration, abs=1e-6)
    centers, _ = snippet_frames(cfg, last_cpu.num_frames)
    np.testing.assert_array_equal(np.concatenate([b.center_frame_N for b in gpu_batches]), centers)
    assert gpu_NTHWC.shape == cpu_NTHWC.shape
    diff = np.abs(gpu_NTHWC.astype(np.int16) - cpu_NTHWC.astype(np.int16))
    RESULTS[f"frames/{name}/{cfg_name}"] = {
        "mean_abs": float(diff.mean()),
        "p99_abs": float(np.percentile(diff, 99)),
        "max_abs": int(diff.max()),
        "snippets": int(len(cpu_NTHWC)),
    }
    assert diff.mean() <= FRAME_MEAN_ABS, RESULTS[f"frames/{name}/{cfg_name}"]


@pytest.mark.parametrize(
    "model, cfg",
    [
        (presets.demo_recognizer(), TSN),
        (presets.recognizer("slowonly_r50_kinetics400")["model"], SLOWONLY),
    ],
    ids=["tsn_r18", "slowonly_r50"],
)
def test_features_close_from_cuda_clips(corpus, gpu_decoder, model, cfg):
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    extractor = FeatureExtractor(ExtractorConfig(model=model, output="pooled"), device="cuda")
    gpu_decoder.cfg = dataclasses.replace(cfg, decoder="nvdec")
    for name in ("h264_bframes", "h264_720p_bt709", "h264_720p", "vp9_webm"):
        _, cpu_NTHWC = read(iter_snippets(corpus[name], cfg))
        gpu_NTHWC = torch.cat([b.clips_NTHWC for b in gpu_decoder.iter_snippets(corpus[name])])
        cpu_NC = extractor.extract(cpu_NTHWC)
        gpu_NC = extractor.extract(gpu_NTHWC)  # a CUDA tensor, used where it lies
        same_pixels_NC = extractor.extract(gpu_NTHWC.cpu().numpy())
        np.testing.assert_allclose(gpu_NC, same_pixels_NC, rtol=1e-5, atol=1e-5)
        scale = float(np.abs(cpu_NC).max())
        rel = np.abs(gpu_NC - cpu_NC).max() / scale
        cos = (
            (gpu_NC * cpu_NC).sum(1)
            / np.linalg.norm(gpu_NC, axis=1)
            / np.linalg.norm(cpu_NC, axis=1)
        )
        RESULTS[f"features/{name}/{model['backbone']['type']}"] = {
            "max_abs_over_max_feature": float(rel),
            "min_cosine": float(cos.min()),
        }
        np.testing.assert_allclose(gpu_NC, cpu_NC, rtol=FEAT_RTOL, atol=FEAT_ATOL * scale)


def test_broken_videos_raise_the_cpu_reasons(tmp_path, gpu_decoder):
    gpu_decoder.cfg = dataclasses.replace(TSN, decoder="nvdec")
    for name, (path, reason) in videos.make_broken_videos(tmp_path).items():
        with pytest.raises(VideoDecodeError) as err:
            list(gpu_decoder.iter_snippets(path))
        assert err.value.reason == reason, name


def test_stream_nvdec_does_not_take_is_decoded_on_the_cpu(tmp_path, gpu_decoder):
    gpu_decoder.cfg = dataclasses.replace(TSN, decoder="nvdec")
    path = videos.make_video(tmp_path / "m.mp4", 320, 240, seconds=1, codec="mpeg4")
    batches = list(gpu_decoder.iter_snippets(path))
    assert isinstance(batches[0].clips_NTHWC, np.ndarray)
    _, cpu_NTHWC = read(iter_snippets(path, TSN))
    np.testing.assert_array_equal(np.concatenate([b.clips_NTHWC for b in batches]), cpu_NTHWC)


def test_snippet_features_actor_nvdec_matches_cpu(corpus):
    """The real extract stage: one actor per decoder, same rows up to the feature tolerance."""
    from core.config import load
    from core.io import tables
    from core.pipeline import columns as col
    from core.pipeline.config import ExtractConfig
    from core.pipeline.stages import SnippetFeatures

    base, _ = load("configs/extract/demo.py", ExtractConfig, {"extractor.num_gpus": 0.5})
    batch = {
        tables.VIDEO_ID: np.array(["a", "b", "missing"], dtype=object),
        tables.URI: np.array(
            [corpus["h264_bframes"], corpus["vp9_webm"], corpus["h264_bframes"] + ".nope"],
            dtype=object,
        ),
    }
    rows = {}
    for decoder in ("cpu", "nvdec"):
        cfg = dataclasses.replace(
            base, sampling=dataclasses.replace(base.sampling, decoder=decoder)
        )
        actor = SnippetFeatures(cfg)
        assert actor.kind == decoder
        rows[decoder] = actor(dict(batch))
    cpu, gpu = rows["cpu"], rows["nvdec"]
    for key in (col.OK, col.NUM_SNIPPETS, col.NUM_FRAMES, col.ERROR_TYPE):
        np.testing.assert_array_equal(gpu[key], cpu[key], err_msg=key)
    np.testing.assert_allclose(gpu[col.DURATION], cpu[col.DURATION], atol=1e-6)
    assert list(cpu[col.OK]) == [True, True, False]
    scale = float(np.abs(cpu[col.FEATS]).max())
    np.testing.assert_allclose(
        gpu[col.FEATS], cpu[col.FEATS], rtol=FEAT_RTOL, atol=FEAT_ATOL * scale
    )
