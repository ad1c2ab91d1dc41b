"""The one error of the video package: a video that cannot be turned into snippets."""

from __future__ import annotations


class VideoDecodeError(Exception):
    """A video that cannot be turned into snippets; ``reason`` names the cause.

    Reasons: ``open`` (not a readable media file: missing, empty, not a container, truncated
    before its index), ``no_video_stream`` (e.g. audio only), ``unsupported_codec`` (no decoder
    for the stream's codec), ``zero_frames`` (a video stream with no frames), ``decode`` (the
    stream has packets but none decoded into a frame).
    """

    OPEN = "open"
    NO_VIDEO_STREAM = "no_video_stream"
    UNSUPPORTED_CODEC = "unsupported_codec"
    ZERO_FRAMES = "zero_frames"
    DECODE = "decode"
    REASONS = (OPEN, NO_VIDEO_STREAM, UNSUPPORTED_CODEC, ZERO_FRAMES, DECODE)

    def __init__(self, reason: str, message: str, path: str = "") -> None:
        if reason not in self.REASONS:
            raise ValueError(f"unknown reason {reason!r}; expected one of {self.REASONS}")
        super().__init__(f"[{reason}] {message}" + (f" ({path})" if path else ""))
        self.reason = reason
        self.message = message
        self.path = path

    def __reduce__(self):  # picklable across Ray workers despite the custom signature
        return (type(self), (self.reason, self.message, self.path))
