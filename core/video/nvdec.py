"""Decoding on the GPU's hardware decoder (NVDEC) through PyNvVideoCodec, frames staying on the
GPU from the decoder to the recognizer.

A video goes through three steps:

1. :func:`scan` (CPU, PyAV): the container header, a check that NVDEC can decode the stream
   (:func:`stream_unsupported_reason`), the display rotation from the first decoded frame, and
   one pass of the demuxer (packets only, no decoding) for the frame count and each frame's
   presentation time. The CPU decoder counts frames while decoding because container counts are
   often wrong; counting packets gives the same count and times without decoding, so both
   decoders cut the same snippets at the same times.
2. :func:`core.video.sample.snippet_frames` turns the count into each snippet's frame indices:
   the same function the CPU decoder's :class:`~core.video.sample.SnippetAssembler` follows.
3. :func:`iter_snippets_nvdec`: a PyNvVideoCodec ``SimpleDecoder`` (one per actor, reused from
   video to video by :class:`NvdecSession`) decodes exactly those frames by index, as NV12 on
   the GPU, at most ``batch_size`` full-size frames per call; they are converted to RGB with
   the CPU path's YUV matrix, resized and cropped on the GPU
   (:func:`core.video.gpu_transforms.nv12_to_crops`) and leave as CUDA uint8 clips. Memory is
   bounded by one batch whatever the video's length.

What differs from the CPU path: pixels (float arithmetic against FFmpeg's and OpenCV's fixed
point, within the tolerance ``tests/gpu/test_nvdec_parity.py`` checks); damaged packets inside a stream are
concealed by the hardware rather than counted (``num_decode_errors`` stays 0, a demuxer that
stops early still sets ``truncated``).

Shape legend: N snippets, T frames per snippet, F frames, U distinct frames of a batch,
S = ``crop_size``, 3 RGB channels.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np

from core.video.errors import VideoDecodeError
from core.video.probe import VideoInfo, open_container, video_info, video_stream
from core.video.sample import SamplingConfig, SnippetBatch, snippet_frames
from core.video.transforms import quarter_turns

log = logging.getLogger(__name__)

NVDEC_LIMITS = {
    "h264": (48, 16, 4096, 4096),
    "hevc": (144, 144, 8192, 8192),
    "vp9": (128, 128, 8192, 8192),
    "av1": (128, 128, 8192, 8192),
}
"""Codecs (FFmpeg names) sent to NVDEC, with (min width, min height, max width, max height) in
pixels: what the NVDEC of every GPU generation since Turing decodes (AV1 from Ampere), per
NVIDIA's Video Codec SDK support matrix. Anything else is decoded on the CPU."""
NVDEC_PIX_FMTS = ("yuv420p", "yuvj420p", "nv12")
"""8-bit 4:2:0 layouts; 10-bit and 4:2:2 / 4:4:4 streams are decoded on the CPU."""
MIN_DECODER_SIDE = 1920
"""A session's decoder is made for frames up to this size (or the video's, if larger), so that
most later videos reuse it by ``reconfigure_decoder`` instead of a new decoder."""


def machine_unsupported_reason() -> str | None:
    """Why this process cannot decode with NVDEC (no CUDA GPU, no PyNvVideoCodec, no
    ``libnvcuvid``), or None when it can."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to this process"
    if importlib.util.find_spec("PyNvVideoCodec") is None:
        return "PyNvVideoCodec is not installed (pip install 'action-finder[nvdec]')"
    try:
        ctypes.CDLL("libnvcuvid.so.1")
    except OSError:
        return (
            "the driver's NVDEC library libnvcuvid.so.1 is missing (in a container, set "
            "NVIDIA_DRIVER_CAPABILITIES to include 'video')"
        )
    try:
        import PyNvVideoCodec  # noqa: F401
    except Exception as e:  # noqa: BLE001  (it raises RuntimeError, ImportError, OSError)
        return f"PyNvVideoCodec does not load: {type(e).__name__}: {e}"
    return None


def stream_unsupported_reason(
    codec: str, pix_fmt: str | None, width: int, height: int
) -> str | None:
    """Why NVDEC is not used for a stream (codec, pixel format or size), or None."""
    if codec not in NVDEC_LIMITS:
        return f"codec {codec} is not decoded by NVDEC here (only {', '.join(NVDEC_LIMITS)})"
    if pix_fmt not in NVDEC_PIX_FMTS:
        return f"{codec} in pixel format {pix_fmt} is not 8-bit 4:2:0"
    if width % 2 or height % 2:
        return f"{codec} at {width}x{height} has an odd side (NV12 needs even ones)"
    min_w, min_h, max_w, max_h = NVDEC_LIMITS[codec]
    if not (min_w <= width <= max_w and min_h <= height <= max_h):
        return f"{codec} at {width}x{height} is outside NVDEC's {min_w}x{min_h} to {max_w}x{max_h}"
    return None


@dataclass(frozen=True)
class VideoScan:
    """What :func:`scan` learnt of a video that NVDEC can decode."""

    info: VideoInfo
    """The container's claims, as :func:`core.video.probe` gives them."""
    time_F: np.ndarray
    """float64 presentation time of each frame in display order, seconds from the first; its
    length is the frame count."""
    duration: float
    """End of the last frame: its time plus its duration (or the last gap, or 1 / fps)."""
    turns: int
    """Counter-clockwise quarter turns that show the frames upright (display rotation)."""
    colorspace: int
    """The stream's YUV matrix as FFmpeg's ``AVColorSpace`` code (2: unspecified)."""
    full_range: bool
    """JPEG (0-255) rather than MPEG (16-235) range."""
    truncated: bool
    """Whether the demuxer stopped before the end of the file."""


def scan(path: str) -> tuple[VideoScan | None, str | None]:
    """Reads a video's header and packets on the CPU (see the module docstring).

    Returns:
        ``(scan, None)`` when NVDEC can decode the stream, else ``(None, reason)``.

    Raises:
        VideoDecodeError: as :func:`core.video.iter_snippets` does for the same file (``open``,
            ``no_video_stream``, ``unsupported_codec``, ``zero_frames``, ``decode``).
    """
    with open_container(path) as container:
        stream = video_stream(container, path)
        info = video_info(container, stream)
        reason = stream_unsupported_reason(
            info.codec, stream.codec_context.pix_fmt, info.width, info.height
        )
        if reason is not None:
            return None, reason
        stream.codec_context.thread_count = 1
        pts, durations, first, errors, truncated = _demux(container, stream)
        # read while the container is open: PyAV 18.1.1 refuses a closed container's streams
        time_base = float(stream.time_base) if stream.time_base else 0.0
    if first is None and errors:
        raise VideoDecodeError(
            VideoDecodeError.DECODE, f"no frame decoded; {errors} packets failed", path
        )
    if first is None or not pts:
        raise VideoDecodeError(VideoDecodeError.ZERO_FRAMES, "video stream has no frames", path)
    step = 1.0 / info.fps if info.fps > 0 else 0.0
    if any(p is None for p in pts) or not time_base:
        time_F, last_duration = np.arange(len(pts), dtype=np.float64) * step, 0.0
    else:
        order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
        pts_F = np.asarray(pts, dtype=np.int64)[order]
        time_F = (pts_F - pts_F[0]) * time_base
        last_duration = (durations[order[-1]] or 0) * time_base
    gap = time_F[-1] - time_F[-2] if len(time_F) > 1 else 0.0
    duration = float(time_F[-1] + (last_duration or gap or step))
    turns = quarter_turns(first.rotation or 0)
    full_range = first.color_range == 2 or first.format.name.startswith("yuvj")
    return VideoScan(info, time_F, duration, turns, first.colorspace, full_range, truncated), None


def _demux(container, stream) -> tuple[list, list, av.VideoFrame | None, int, bool]:
    """Every frame packet's pts and duration; the first frame, decoded for its rotation."""
    pts, durations = [], []
    first, errors, truncated = None, 0, False
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except av.error.FFmpegError:  # demuxer gave up: the end of what can be read
            truncated = True
            break
        if packet.size and not packet.is_discard:
            pts.append(packet.pts)
            durations.append(packet.duration)
        if first is None:  # decode until the first frame (the empty packet flushes)
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                errors += 1
                continue
            first = frames[0] if frames else None
    return pts, durations, first, errors, truncated


class NvdecOpenError(RuntimeError):
    """PyNvVideoCodec could not open a video that PyAV reads (decoded on the CPU instead)."""


class NvdecSession:
    """One PyNvVideoCodec ``SimpleDecoder`` per actor, reused from video to video with
    ``reconfigure_decoder`` (a new decoder only for a larger frame size or after a failure)."""

    def __init__(self, gpu_id: int = 0) -> None:
        import PyNvVideoCodec as nvc
        import torch

        self.nvc, self.gpu_id = nvc, gpu_id
        self.device = torch.device("cuda", gpu_id)
        """Where the decoder's frames lie (and the clips are made)."""
        self.decoder = None
        self.max_side = 0

    def open(self, path: str, width: int, height: int, num_frames: int):
        """The session's decoder, now reading ``path``, which must index ``num_frames`` frames.

        Raises:
            NvdecOpenError: PyNvVideoCodec cannot open the file or indexes fewer frames.
        """
        decoder = None
        if self.decoder is not None and max(width, height) <= self.max_side:
            try:
                self.decoder.reconfigure_decoder(path)
                decoder = self.decoder
            except Exception as e:  # noqa: BLE001  (PyNvVideoCodec raises plain Exception)
                log.debug("reconfigure_decoder failed on %s (%s): a new decoder", path, e)
        if decoder is None:
            self.decoder = None  # release the old one's surfaces first
            side = max(MIN_DECODER_SIDE, width, height)
            try:
                decoder = self.nvc.SimpleDecoder(
                    path,
                    gpu_id=self.gpu_id,
                    use_device_memory=True,
                    max_width=side,
                    max_height=side,
                    decoder_cache_size=2,
                    output_color_type=self.nvc.OutputColorType.NATIVE,
                )
            except Exception as e:  # noqa: BLE001
                raise NvdecOpenError(f"PyNvVideoCodec cannot open it: {e}") from e
            self.decoder, self.max_side = decoder, side
        indexed = len(decoder)
        if indexed < num_frames:
            raise NvdecOpenError(
                f"PyNvVideoCodec indexes {indexed} frames, the demuxer found {num_frames}"
            )
        return decoder


def iter_snippets_nvdec(
    path: str, cfg: SamplingConfig, session: NvdecSession, video: VideoScan
) -> Iterator[SnippetBatch]:
    """Decodes a scanned video's snippets on the GPU; batches as :func:`core.video.iter_snippets`
    yields them (same positions, times and counts), ``clips_NTHWC`` a CUDA uint8 tensor.

    Raises:
        NvdecOpenError: before the first batch, when PyNvVideoCodec cannot read the file.
        VideoDecodeError: ``decode``, when NVDEC stops handing out frames mid-video.
    """
    import torch

    from core.video.gpu_transforms import nv12_to_crops

    num_frames = len(video.time_F)
    center_N, frames_NT = snippet_frames(cfg, num_frames)
    decoder = session.open(path, video.info.width, video.info.height, num_frames)
    device = session.device
    for start in range(0, len(center_N), cfg.batch_size):
        batch_NT = frames_NT[start : start + cfg.batch_size]
        unique_U, slot_of = np.unique(batch_NT, return_inverse=True)
        crops = []
        for chunk in np.array_split(unique_U, -(-len(unique_U) // cfg.batch_size)):
            frames = decoder.get_batch_frames_by_index(chunk.tolist())
            if len(frames) != len(chunk):
                raise VideoDecodeError(
                    VideoDecodeError.DECODE,
                    f"NVDEC returned {len(frames)} of frames {chunk[0]}..{chunk[-1]}",
                    path,
                )
            nv12_FXW = torch.stack([torch.from_dlpack(f) for f in frames])  # our copy
            if device.type == "cuda":  # the decoder reuses its surfaces on the next call
                torch.cuda.current_stream(device).synchronize()
            crops.append(
                nv12_to_crops(
                    nv12_FXW,
                    cfg.short_side,
                    cfg.crop_size,
                    video.turns,
                    video.colorspace,
                    video.full_range,
                )
            )
        crops_USS3 = torch.cat(crops)
        slot_NT = torch.from_numpy(slot_of.reshape(batch_NT.shape)).to(device)
        center = center_N[start : start + cfg.batch_size]
        yield SnippetBatch(
            clips_NTHWC=crops_USS3[slot_NT],
            snippet_index_N=np.arange(start, start + len(center), dtype=np.int64),
            center_frame_N=center.copy(),
            center_time_N=video.time_F[center],
            info=video.info,
            num_frames=num_frames,
            duration=video.duration,
            is_last=start + cfg.batch_size >= len(center_N),
            truncated=video.truncated,
        )
