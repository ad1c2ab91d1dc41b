"""Which decoder turns an actor's videos into snippets: :class:`SnippetDecoder` reads
``sampling.decoder`` once, when the actor starts, and then decodes every video with it.

* ``"cpu"``: PyAV on the CPU (:func:`core.video.iter_snippets`); clips are numpy arrays.
* ``"nvdec"``: NVDEC on the actor's GPU (:mod:`core.video.nvdec`); clips are CUDA tensors on
  the recognizer's device. An actor that cannot (its recognizer on the CPU, no CUDA GPU, no
  PyNvVideoCodec, no ``libnvcuvid``) fails at start with :class:`NvdecUnavailableError`.
* ``"auto"``: ``"nvdec"`` where the actor can, else ``"cpu"``, logging why once.

With NVDEC, a video whose stream NVDEC does not take (codec other than H.264, HEVC, VP9 or AV1;
not 8-bit 4:2:0; a size outside NVDEC's limits) or that PyNvVideoCodec cannot open is decoded
on the CPU, each reason logged once per actor, so no video is lost to the choice of decoder.
Both decoders give the same snippets at the same positions and times
(:func:`core.video.sample.snippet_frames`) and the same :class:`VideoDecodeError` reasons for
files that are not videos.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from core.video import nvdec
from core.video.decode import iter_snippets
from core.video.sample import SamplingConfig, SnippetBatch

log = logging.getLogger(__name__)


class NvdecUnavailableError(RuntimeError):
    """``sampling.decoder='nvdec'`` on an actor that cannot decode with NVDEC."""


class SnippetDecoder:
    """An actor's decoder, chosen from ``cfg.decoder`` once (see the module docstring)."""

    def __init__(self, cfg: SamplingConfig, device: str = "cuda") -> None:
        """Chooses the decoder.

        Args:
            cfg: the sampling settings; ``cfg.decoder`` picks the decoder.
            device: the recognizer's device (``"cpu"``, ``"cuda"``, ``"cuda:1"``): NVDEC
                decodes on that GPU, so its clips are already where the recognizer runs.

        Raises:
            NvdecUnavailableError: ``cfg.decoder`` is ``"nvdec"`` and NVDEC cannot be used.
        """
        import torch

        self.cfg = cfg
        self.session: nvdec.NvdecSession | None = None
        self._logged: set[str] = set()
        if cfg.decoder == "cpu":
            return
        where = torch.device(device)
        if where.type != "cuda":
            reason = f"the recognizer runs on {where} (extractor.num_gpus = 0 or no GPU)"
        else:
            reason = nvdec.machine_unsupported_reason()
        if reason is None:
            index = where.index if where.index is not None else torch.cuda.current_device()
            self.session = nvdec.NvdecSession(gpu_id=index)
            log.info("sampling.decoder=%r: decoding with NVDEC on cuda:%d", cfg.decoder, index)
        elif cfg.decoder == "nvdec":
            raise NvdecUnavailableError(f"sampling.decoder='nvdec' but {reason}")
        else:
            log.warning("sampling.decoder='auto': decoding on the CPU because %s", reason)

    @property
    def kind(self) -> str:
        """``"nvdec"`` or ``"cpu"``: what this actor decodes with."""
        return "cpu" if self.session is None else "nvdec"

    def iter_snippets(self, path: str) -> Iterator[SnippetBatch]:
        """The snippets of a local video in batches, as :func:`core.video.iter_snippets`.

        Raises:
            VideoDecodeError: the file cannot be turned into snippets.
        """
        if self.session is None:
            return iter_snippets(path, self.cfg)
        return self._iter_nvdec(path)

    def _iter_nvdec(self, path: str) -> Iterator[SnippetBatch]:
        video, reason = nvdec.scan(path)
        if video is not None:
            batches = nvdec.iter_snippets_nvdec(path, self.cfg, self.session, video)
            try:
                first = next(batches)  # PyNvVideoCodec opens the file before the first batch
            except nvdec.NvdecOpenError as e:
                reason = str(e)
            else:
                yield first
                yield from batches
                return
        self._log_once(path, reason)
        yield from iter_snippets(path, self.cfg)

    def _log_once(self, path: str, reason: str) -> None:
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning("decoding on the CPU where NVDEC cannot: %s (first: %s)", reason, path)
        else:
            log.debug("%s: decoding on the CPU: %s", path, reason)
