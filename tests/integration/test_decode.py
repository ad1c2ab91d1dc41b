"""core.video on real, odd and broken videos."""

from __future__ import annotations

import logging
import pickle

import cv2
import numpy as np
import pytest

from core.config import ConfigError, build
from core.video import (
    SamplingConfig,
    SnippetBatch,
    VideoDecodeError,
    iter_snippets,
    probe,
    resize_crop,
)
from tests.integration import videos

TSN = SamplingConfig(clip_len=1, clip_interval=16, short_side=64, crop_size=56)
SLOWONLY = SamplingConfig(
    clip_len=8, frame_interval=8, clip_interval=16, short_side=64, crop_size=56
)


@pytest.fixture(scope="session")
def odd_videos(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("odd_videos")
    return {
        "odd_321x241": videos.make_video(folder / "odd.mp4", 321, 241, pix_fmt="yuv444p"),
        "portrait_240x426": videos.make_video(folder / "portrait.mp4", 240, 426, seconds=1),
        "vp9_webm": videos.make_video(
            folder / "vp9.webm", 160, 120, codec="libvpx-vp9", extra=("-b:v", "100k")
        ),
        "one_second": videos.make_video(folder / "one_second.mp4", 160, 120, seconds=1),
        "fps5": videos.make_video(folder / "fps5.mp4", 160, 120, fps=5, seconds=2),
        "five_frames": videos.make_video(folder / "five.mp4", 160, 120, fps=25, seconds=0.2),
        "vfr": videos.make_vfr_video(folder / "vfr.mp4"),
        "faststart": videos.make_video(
            folder / "faststart.mp4", 160, 120, extra=("-movflags", "+faststart")
        ),
        "counter60": videos.make_counter_video(folder / "counter60.mp4", num_frames=60),
        "counter5": videos.make_counter_video(folder / "counter5.mp4", num_frames=5),
        "long200": videos.make_video(folder / "long200.mp4", 96, 64, seconds=8),
    }


@pytest.fixture(scope="session")
def broken_videos(tmp_path_factory) -> dict[str, tuple[str, str]]:
    return videos.make_broken_videos(tmp_path_factory.mktemp("broken_videos"))


def read_all(path: str, cfg: SamplingConfig) -> tuple[list[SnippetBatch], np.ndarray]:
    batches = list(iter_snippets(path, cfg))
    return batches, np.concatenate([b.clips_NTHWC for b in batches])


def frame_ids(clips_NTHWC: np.ndarray, step: int = 4) -> np.ndarray:
    """Which frame of a counter video each clip frame is: (N, T) ints."""
    return np.rint(clips_NTHWC.mean(axis=(2, 3, 4)) / step).astype(int)


# ----------------------------------------------------------------------------- sampling


@pytest.mark.parametrize(
    "name, frames, snippets",
    [
        ("odd_321x241", 50, 3),
        ("portrait_240x426", 25, 2),
        ("vp9_webm", 50, 3),
        ("one_second", 25, 2),
        ("fps5", 10, 1),
        ("five_frames", 5, 1),
        ("vfr", 50, 3),
    ],
)
@pytest.mark.parametrize("cfg", [TSN, SLOWONLY], ids=["tsn", "slowonly"])
def test_odd_videos_give_the_right_snippets(odd_videos, name, frames, snippets, cfg):
    batches, clips_NTHWC = read_all(odd_videos[name], cfg)
    assert clips_NTHWC.shape == (snippets, cfg.clip_len, 56, 56, 3)
    assert clips_NTHWC.dtype == np.uint8
    assert batches[-1].is_last and not any(b.is_last for b in batches[:-1])
    assert batches[-1].num_frames == frames
    assert cfg.num_snippets(frames) == snippets
    index_N = np.concatenate([b.snippet_index_N for b in batches])
    np.testing.assert_array_equal(index_N, np.arange(snippets))


def test_frame_selection_matches_untrimmed_sample_frames(odd_videos):
    """Snippet k, slot j holds frame clip(8 + 16 k + offset_j, 0, n - 1), as MMAction2."""
    cfg = SamplingConfig(
        clip_len=8, frame_interval=8, clip_interval=16, short_side=64, crop_size=64
    )
    batches, clips_NTHWC = read_all(odd_videos["counter60"], cfg)
    centers = np.arange(8, 60, 16)
    expected_NT = np.clip(centers[:, None] + cfg.frame_offsets()[None, :], 0, 59)
    np.testing.assert_array_equal(frame_ids(clips_NTHWC), expected_NT)
    np.testing.assert_array_equal(np.concatenate([b.center_frame_N for b in batches]), centers)
    np.testing.assert_allclose(np.concatenate([b.center_time_N for b in batches]), centers / 25)


def test_short_video_gets_one_snippet_on_its_middle_frame(odd_videos):
    cfg = SamplingConfig(
        clip_len=4, frame_interval=2, clip_interval=16, short_side=64, crop_size=64
    )
    (batch,), clips_NTHWC = read_all(odd_videos["counter5"], cfg)
    assert batch.center_frame_N.tolist() == [2]
    np.testing.assert_array_equal(frame_ids(clips_NTHWC), [[0, 0, 2, 4]])  # 2 + [-4, -2, 0, 2]


def test_batches_stream_in_order(odd_videos):
    cfg = SamplingConfig(clip_interval=4, short_side=64, crop_size=56, batch_size=8)
    stream = iter_snippets(odd_videos["long200"], cfg)
    first = next(stream)
    assert len(first.clips_NTHWC) == 8 and not first.is_last
    assert first.num_frames < 200  # the rest of the video is not decoded yet
    rest = list(stream)
    assert rest[-1].is_last and rest[-1].num_frames == 200
    assert sum(len(b.clips_NTHWC) for b in [first, *rest]) == 50
    assert all(len(b.clips_NTHWC) == 8 for b in rest[:-1])


def test_no_batch_is_empty_even_when_snippets_fill_batches_exactly(odd_videos):
    cfg = SamplingConfig(short_side=64, crop_size=56, batch_size=3)  # 50 frames: 3 snippets
    (batch,) = list(iter_snippets(odd_videos["vp9_webm"], cfg))
    assert batch.is_last and len(batch.clips_NTHWC) == 3


def test_display_rotation_is_applied(odd_videos, tmp_path):
    """A phone-style file (landscape pixels, display matrix 90 degrees) comes out upright,
    as ffmpeg shows it."""
    cfg = SamplingConfig(short_side=64, crop_size=64)
    plain = videos.make_video(tmp_path / "square.mp4", 120, 120, seconds=1)  # nothing cropped
    rotated = videos.set_rotation(plain, tmp_path / "rot90.mp4", 90)
    _, plain_NTHWC = read_all(plain, cfg)
    _, rotated_NTHWC = read_all(rotated, cfg)
    upright = np.rot90(plain_NTHWC, k=1, axes=(2, 3)).astype(float)
    wrong_way = np.rot90(plain_NTHWC, k=3, axes=(2, 3)).astype(float)
    assert np.abs(rotated_NTHWC - upright).mean() < 3
    assert np.abs(rotated_NTHWC - wrong_way).mean() > 10


def test_variable_frame_rate_times_come_from_timestamps(odd_videos):
    batches, _ = read_all(odd_videos["vfr"], TSN)
    np.testing.assert_allclose(batches[0].center_time_N, [8 / 25, 24 / 25, 1 + 15 / 5], atol=1e-3)
    # last frame at 1 + 24 / 5 = 5.8 s; the muxer gives it the nominal 1/25 s
    assert batches[-1].duration == pytest.approx(5.8 + 1 / 25, abs=1e-3)


def test_webm_has_no_frame_count_and_is_counted_while_decoding(odd_videos):
    info = probe(odd_videos["vp9_webm"])
    assert info.codec == "vp9" and (info.width, info.height) == (160, 120)
    batches, _ = read_all(odd_videos["vp9_webm"], TSN)
    assert batches[-1].num_frames == 50


def test_probe_reads_the_header(odd_videos):
    info = probe(odd_videos["portrait_240x426"])
    assert (info.width, info.height, info.codec) == (240, 426, "h264")
    assert info.fps == pytest.approx(25) and info.num_frames == 25
    assert info.duration == pytest.approx(1.0, abs=0.05)


def test_truncated_faststart_file_uses_the_frames_that_decode(odd_videos, tmp_path, caplog):
    path = videos.truncate_faststart(odd_videos["faststart"], tmp_path / "cut.mp4")
    assert probe(path).num_frames == 50  # the index still promises every frame
    with caplog.at_level(logging.WARNING, logger="core.video.decode"):
        batches, clips_NTHWC = read_all(path, TSN)
    decoded = batches[-1].num_frames
    assert 0 < decoded < 50
    assert len(clips_NTHWC) == TSN.num_snippets(decoded)
    assert "decoded" in caplog.text


# ----------------------------------------------------------------------------- real videos


@pytest.mark.parametrize(
    "name, frames, size", [("bigbuckbunny.mp4", 132, (1280, 720)), ("bikes.mp4", 250, (640, 272))]
)
def test_real_h264_videos(name, frames, size):
    path = str(videos.require_real_videos() / name)
    info = probe(path)
    assert (info.width, info.height) == size and info.codec == "h264"
    cfg = SamplingConfig(short_side=128, crop_size=112)
    batches, clips_NTHWC = read_all(path, cfg)
    assert batches[-1].num_frames == frames
    assert clips_NTHWC.shape == (cfg.num_snippets(frames), 1, 112, 112, 3)
    assert clips_NTHWC.std() > 10  # real content, not a blank frame


def test_matches_mmaction2_decord_pipeline():
    """Same frames, resize and crop as MMAction2's UntrimmedSampleFrames + DecordDecode +
    Resize + CenterCrop (only the YUV->RGB conversions of the two decoders may differ)."""
    path = str(videos.require_real_videos() / "carphone_pristine.mp4")
    pytest.importorskip("mmcv")
    pytest.importorskip("decord")
    from mmaction.datasets.transforms import (
        CenterCrop,
        DecordDecode,
        DecordInit,
        Resize,
        UntrimmedSampleFrames,
    )

    cfg = SamplingConfig(
        clip_len=4, frame_interval=4, clip_interval=16, short_side=128, crop_size=112
    )
    results = {"filename": path, "start_index": 0, "modality": "RGB"}
    for transform in (
        DecordInit(),
        UntrimmedSampleFrames(clip_len=4, clip_interval=16, frame_interval=4),
        DecordDecode(),
        Resize(scale=(-1, 128)),
        CenterCrop(crop_size=112),
    ):
        results = transform(results)
    expected_NTHWC = np.stack(results["imgs"]).reshape(-1, 4, 112, 112, 3).astype(np.float32)
    _, clips_NTHWC = read_all(path, cfg)
    assert clips_NTHWC.shape == expected_NTHWC.shape
    per_snippet_err = np.abs(clips_NTHWC - expected_NTHWC).mean(axis=(1, 2, 3, 4))
    assert per_snippet_err.max() < 2.0
    neighbour_diff = np.abs(np.diff(expected_NTHWC, axis=0)).mean()
    assert per_snippet_err.max() < neighbour_diff / 3


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "name",
    [
        "truncated_half.mp4",
        "zero_bytes.mp4",
        "text.mp4",
        "unknown_codec.mp4",
        "payload_zeroed.mp4",
        "audio_only.m4a",
    ],
)
def test_broken_videos_raise_with_their_reason(broken_videos, name):
    path, reason = broken_videos[name]
    with pytest.raises(VideoDecodeError) as info:
        list(iter_snippets(path, TSN))
    assert info.value.reason == reason
    assert info.value.path == path


def test_missing_file_is_an_open_error(tmp_path):
    with pytest.raises(VideoDecodeError) as info:
        probe(str(tmp_path / "nope.mp4"))
    assert info.value.reason == "open"


def test_decode_error_pickles_with_its_reason():
    err = pickle.loads(pickle.dumps(VideoDecodeError("decode", "bad packets", "/x.mp4")))
    assert (err.reason, err.message, err.path) == ("decode", "bad packets", "/x.mp4")
    with pytest.raises(ValueError):
        VideoDecodeError("nonsense", "message")


def test_sampling_config_rejects_bad_values():
    with pytest.raises(ValueError):
        SamplingConfig(crop_size=300, short_side=256)
    with pytest.raises(ValueError):
        SamplingConfig(clip_len=0)
    with pytest.raises(ConfigError, match="clip_length"):
        build(SamplingConfig, {"clip_length": 8})
    with pytest.raises(ConfigError, match="crop_size"):
        build(SamplingConfig, {"crop_size": 300})
    assert build(SamplingConfig, {"clip_len": 8}) == SamplingConfig(clip_len=8)


# ----------------------------------------------------------------------------- resize


def test_resize_crop_uses_the_interpolation_it_is_given():
    """Bilinear by default, as mmcv.imresize; another flag changes the result (a flag passed
    where cv2.resize expects ``dst`` would be ignored)."""
    img_HWC = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    bilinear_HWC = resize_crop(img_HWC, 40, 32)
    area_HWC = resize_crop(img_HWC, 40, 32, interpolation=cv2.INTER_AREA)
    nearest_HWC = resize_crop(img_HWC, 40, 32, interpolation=cv2.INTER_NEAREST)
    assert bilinear_HWC.shape == area_HWC.shape == (32, 32, 3)
    assert np.abs(bilinear_HWC.astype(int) - area_HWC).mean() > 5
    assert np.abs(bilinear_HWC.astype(int) - nearest_HWC).mean() > 5
    mmcv = pytest.importorskip("mmcv")
    expected_HWC = mmcv.imresize(img_HWC, (53, 40), interpolation="bilinear")[4:36, 10:42]
    np.testing.assert_array_equal(bilinear_HWC, expected_HWC)
