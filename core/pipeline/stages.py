"""The extract pipeline's actor stages, in Ray's class pattern: the model loads in
``__init__``, ``__call__`` maps a ``dict[str, np.ndarray]`` batch of video rows to another.

Why decode lives in the feature actor rather than in a CPU stage of its own: decoded pixels
are about 100 times larger than the features made from them (a 224² RGB snippet is 150 KB, its
400 class scores 1.6 KB), and one long video yields thousands of snippets. A separate stage
would either ship a whole video's pixels through the object store in one row (gigabytes for an
hour of SlowOnly clips) or split videos into chunks that an all-to-all ``groupby`` must put back
together, a barrier that stops streaming and resuming. In the actor, the decoder streams
(:func:`core.video.iter_snippets`), snippets of consecutive videos share recognizer batches,
and memory is bounded by one batch. The GPU is shared by fractional ``num_gpus``; its work per
snippet is a small fraction of the decode work, so many decoding actors keep it busy.

An actor may run several calls at once (``pipeline.calls_per_actor``), each in its own thread:
every running call holds a decoder of its own (for NVDEC, a decoder session of its own), taken
from the actor's idle decoders or made when none is idle, so one call decodes while another
waits for the recognizer. The recognizer is shared; its seconds are counted per thread.

Where :class:`SnippetFeatures` decodes is ``cfg.sampling.decoder`` (:mod:`core.video.backend`):
``"cpu"`` (PyAV, numpy clips copied to the recognizer), ``"nvdec"`` (the actor's GPU decodes,
clips stay on it; the actor fails at start if it cannot: it needs ``extractor.num_gpus > 0``,
PyNvVideoCodec and the driver's ``libnvcuvid``) or ``"auto"`` (NVDEC where the actor can, else
the CPU). The job runs both decoders in one pool (:mod:`core.pipeline.pools`): each actor is
built from the same config with only ``sampling.decoder`` replaced, and both write identical
rows for the same video, up to the features' resampling tolerance.

Shape legend: B videos in a batch, N snippets, C feature channels, T positions, P proposals.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Iterator

import numpy as np

from core import storage
from core.config import StorageSection
from core.io import tables
from core.pipeline import columns as col
from core.pipeline.config import ExtractConfig

log = logging.getLogger(__name__)


def limit_cpu_threads(n: int) -> None:
    """Keeps an actor's OpenCV and torch CPU thread pools to the CPUs it reserved: by default
    each sizes itself to the whole node, and a dozen actors per node oversubscribe it."""
    import cv2
    import torch

    cv2.setNumThreads(n)
    torch.set_num_threads(n)


class RecognizerError(RuntimeError):
    """The recognizer failed on a batch of snippets: a job-level failure, not a video's."""


READ_ATTEMPTS = 4
"""Tries to fetch a video before its failure counts as passing and is left for a later run."""


class SnippetFeatures:
    """Actor: decodes its videos and turns their snippets into features rescaled to T.

    Input rows: ``video_id``, ``uri``. Output rows add ``feats_CT`` (float32, zeros when the
    video failed), ``ok``, ``transient``, the error columns, and the video's fps, frames,
    duration, snippets and damaged packets.

    Failures: a video that is not one, is empty, truncated before its index or has no frames
    is an error row (``ok`` False); a video that decodes in part is ``ok`` with
    ``num_decode_errors`` and an explanation in the error columns; a video that cannot be read
    for a passing reason (storage errors, retried with backoff) is ``transient``; a recognizer
    failure raises :class:`RecognizerError` (Ray retries the task; if it persists the job fails).
    """

    def __init__(self, cfg: ExtractConfig) -> None:
        import torch

        from core.features.extractor import FeatureExtractor
        from core.video import SnippetDecoder

        self.cfg = cfg
        limit_cpu_threads(max(1, cfg.sampling.decode_threads))
        use_cuda = cfg.extractor.num_gpus > 0 and torch.cuda.is_available()
        self.extractor = FeatureExtractor(
            cfg.extractor,
            device="cuda" if use_cuda else "cpu",
            seed=cfg.seed,
            allow_pickle=cfg.checkpoint.allow_pickle,
        )
        self.feat_dim = self.extractor.feature_dim
        first = SnippetDecoder(cfg.sampling, device=str(self.extractor.device))
        self.kind = first.kind
        """``"cpu"`` or ``"nvdec"``: what this actor decodes with (every call the same)."""
        self._idle = [first]  # decoders no call holds; one is made when a call finds none
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _decoder(self):
        """A decoder that this call alone uses until it ends (see the module docstring)."""
        from core.video import SnippetDecoder

        with self._lock:
            decoder = self._idle.pop() if self._idle else None
        if decoder is None:  # the same kind as the first: an NVDEC actor stays one
            sampling = dataclasses.replace(self.cfg.sampling, decoder=self.kind)
            decoder = SnippetDecoder(sampling, device=str(self.extractor.device))
        try:
            yield decoder
        finally:
            with self._lock:
                self._idle.append(decoder)

    @property
    def num_decoders(self) -> int:
        """Decoders this actor has made (as many as its calls that ever ran at once)."""
        with self._lock:
            return len(self._idle)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from core.features.rescale import rescale_features

        ids, uris = list(batch[tables.VIDEO_ID]), list(batch[tables.URI])
        facts = _VideoFacts(len(ids))
        feats: list[list[np.ndarray]] = [[] for _ in ids]
        pending: list[tuple[int, np.ndarray]] = []  # (video index, clips_NTHWC)
        with self._decoder() as decoder:
            for i, uri in enumerate(uris):
                self._decode(decoder, i, uri, facts, pending, feats)
        self._flush(pending, feats)
        T = self.cfg.temporal_dim
        feats_BCT = np.zeros((len(ids), self.feat_dim, T), dtype=np.float32)
        snippets_B = np.zeros(len(ids), dtype=np.int32)
        for i in np.nonzero(facts.ok)[0]:
            feats_NC = np.concatenate(feats[i], axis=0)
            snippets_B[i] = len(feats_NC)
            feats_BCT[i] = rescale_features(feats_NC, T)
        return {
            tables.VIDEO_ID: np.asarray(ids, dtype=object),
            tables.URI: np.asarray(uris, dtype=object),
            col.FEATS: feats_BCT,
            col.NUM_SNIPPETS: snippets_B,
            **facts.columns(),
        }

    def _decode(self, decoder, i: int, uri: str, facts: _VideoFacts, pending, feats) -> None:
        """Streams video ``i`` into ``pending``; records its facts or its error."""
        from core.video import VideoDecodeError

        batch_size = self.cfg.extractor.batch_size
        with contextlib.ExitStack() as stack:
            try:
                local = decoder.kind != "cpu"  # NVDEC opens a file path
                source = _fetch(stack, uri, self.cfg.storage, local=local)
            except FileNotFoundError as e:
                facts.fail(i, "read", "not_found", str(e))
                return
            except OSError as e:
                facts.postpone(i, f"{type(e).__name__}: {e}")
                return
            try:
                last = None
                for snippets in _snippets(decoder, source):
                    pending.append((i, snippets.clips_NTHWC))
                    last = snippets
                    if sum(len(c) for _, c in pending) >= batch_size:
                        self._flush(pending, feats)
            except RecognizerError:
                raise
            except storage.InputReadError as e:  # part of it could not be read: left
                facts.postpone(i, f"{type(e).__name__}: {e}")
            except VideoDecodeError as e:
                facts.fail(i, "decode", e.reason, e.message)
            except Exception as e:  # noqa: BLE001  (any other decoder failure is the video's)
                log.exception("decoding %s failed", uri)
                facts.fail(i, "decode", type(e).__name__, str(e))
            else:
                facts.succeed(i, last)

    def _flush(self, pending: list, feats) -> None:
        """Runs the recognizer over the pending snippets (of one or more videos): numpy clips
        from the CPU decoder, CUDA tensors from NVDEC, or both (a video NVDEC left to the CPU)."""
        if not pending:
            return
        clips_NTHWC = self._concatenate([c for _, c in pending])
        feats_NC = _extract_retrying_oom(self.extractor, clips_NTHWC)
        start = 0
        for i, clips in pending:
            feats[i].append(feats_NC[start : start + len(clips)])
            start += len(clips)
        pending.clear()

    @staticmethod
    def _concatenate(clips: list):
        """One batch of clips: numpy if all are, else a tensor where the tensors lie."""
        import torch

        tensors = [c for c in clips if isinstance(c, torch.Tensor)]
        if not tensors:
            return np.concatenate(clips, axis=0)
        return torch.cat([torch.as_tensor(c).to(tensors[0].device) for c in clips], dim=0)


OOM_ATTEMPTS = 3
"""Tries of a recognizer batch that ran out of GPU memory (another actor's peak may pass)."""


def _extract_retrying_oom(extractor, clips_NTHWC: np.ndarray) -> np.ndarray:
    """``extractor.extract``, retrying with backoff when the GPU runs out of memory.

    Raises:
        RecognizerError: the recognizer failed (any other error at once; out of memory after
            :data:`OOM_ATTEMPTS` tries): a job-level failure, not a video's.
    """
    import torch

    started = time.perf_counter()
    try:
        return _extract_with_oom_retries(extractor, clips_NTHWC, torch)
    finally:
        recognizer_clock.seconds += time.perf_counter() - started


class _Clock(threading.local):
    """Seconds a thread spent in one kind of work (each of an actor's running calls has a
    thread of its own, so a call's share is the difference across it in its thread)."""

    def __init__(self) -> None:
        self.seconds = 0.0


recognizer_clock = _Clock()
"""Seconds this thread spent in the recognizer (:func:`_extract_retrying_oom`), read by
:class:`core.pipeline.pools.FeatureActor` for the run's per-stage busy times."""


def _extract_with_oom_retries(extractor, clips_NTHWC, torch) -> np.ndarray:
    for attempt in range(OOM_ATTEMPTS):
        try:
            return extractor.extract(clips_NTHWC)
        except torch.cuda.OutOfMemoryError as e:
            if attempt == OOM_ATTEMPTS - 1:
                raise RecognizerError(
                    f"the GPU ran out of memory {OOM_ATTEMPTS} times on {len(clips_NTHWC)} "
                    "snippets: lower extractor.batch_size or the actors per GPU"
                ) from e
            log.warning("the GPU ran out of memory on %d snippets; retrying", len(clips_NTHWC))
            torch.cuda.empty_cache()
            time.sleep(1.0 * 2**attempt)
        except Exception as e:
            raise RecognizerError(f"the recognizer failed on {len(clips_NTHWC)} snippets") from e
    raise AssertionError("unreachable")


def _fetch(
    stack: contextlib.ExitStack, uri: str, settings: StorageSection, *, local: bool = False
) -> str | storage.StreamedInput:
    """The input to decode ``uri`` from, retrying passing storage errors with exponential
    backoff; released when ``stack`` closes.

    Which decoder gets what: the CPU decoder (PyAV, ``sampling.decoder='cpu'``) gets a
    :class:`core.storage.StreamedInput` for a remote video when ``settings.stream_inputs`` is on
    (range reads retried the same way, see :func:`_snippets`); NVDEC needs a file path, so its
    actors ask with ``local=True`` and get the whole download (so does the CPU decoder when
    ``stream_inputs`` is off). A local file is always its own path.

    Returns:
        A local path, or an open streamed input.

    Raises:
        FileNotFoundError: the video does not exist (not retried).
        OSError: storage kept failing (the caller leaves the video for a later run).
    """
    stream = settings.stream_inputs and not local and not storage.is_local(uri)
    for attempt in range(READ_ATTEMPTS):
        try:
            if stream:
                opened = storage.open_input(
                    uri,
                    block_size=settings.stream_block_size,
                    readahead=settings.stream_readahead,
                    attempts=READ_ATTEMPTS,
                )
                return stack.enter_context(opened)
            return stack.enter_context(storage.local_path(uri))
        except FileNotFoundError:
            raise
        except Exception as e:  # noqa: BLE001  (s3fs, botocore and aiohttp raise many kinds)
            if attempt == READ_ATTEMPTS - 1:
                raise OSError(f"reading {uri} failed {READ_ATTEMPTS} times: {e}") from e
            log.warning("reading %s failed (%s); retrying", uri, e)
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def _snippets(decoder, source: str | storage.StreamedInput) -> Iterator:
    """``decoder.iter_snippets(source)`` over what :func:`_fetch` returned.

    A streamed input whose range reads kept failing raises its
    :class:`core.storage.InputReadError` (the caller leaves the video for a later run),
    whatever the decoder made of the failed read: FFmpeg may take it for the end of the file (a
    short video that would be committed as ok or damaged) or fail to open or decode (an error
    row). The check runs before the generator finishes, so no caller sees a clean end.
    """
    streamed = isinstance(source, storage.StreamedInput)
    try:
        yield from decoder.iter_snippets(source)
    except Exception as e:
        if streamed and source.error is not None:
            raise source.error from e
        raise
    if streamed and source.error is not None:
        raise source.error


class _VideoFacts:
    """Per-video outcome of decoding a batch of B videos: ok or the error, and its facts."""

    def __init__(self, B: int) -> None:
        self.ok = np.zeros(B, dtype=bool)
        self.transient = np.zeros(B, dtype=bool)
        self.stage = np.full(B, "", dtype=object)
        self.error_type = np.full(B, "", dtype=object)
        self.message = np.full(B, "", dtype=object)
        self.fps = np.zeros(B, dtype=np.float64)
        self.num_frames = np.zeros(B, dtype=np.int64)
        self.duration = np.zeros(B, dtype=np.float64)
        self.decode_errors = np.zeros(B, dtype=np.int32)

    def succeed(self, i: int, last) -> None:
        """Records a decoded video from its last :class:`core.video.SnippetBatch`."""
        self.ok[i] = True
        self.fps[i], self.num_frames[i] = float(last.info.fps), int(last.num_frames)
        self.duration[i] = float(last.duration)
        self.decode_errors[i] = int(last.num_decode_errors)
        if last.num_decode_errors or last.truncated:
            self.stage[i], self.error_type[i] = "decode", "damaged"
            self.message[i] = (
                f"{last.num_decode_errors} packets failed to decode"
                + (" and demuxing stopped early" if last.truncated else "")
                + f"; features from the {last.num_frames} frames that decoded"
            )
            self.decode_errors[i] = max(1, self.decode_errors[i])

    def fail(self, i: int, stage: str, error_type: str, message: str) -> None:
        self.stage[i], self.error_type[i], self.message[i] = stage, error_type, message[:2000]

    def postpone(self, i: int, message: str) -> None:
        self.transient[i] = True
        self.fail(i, "read", "transient", message)

    def columns(self) -> dict[str, np.ndarray]:
        return {
            col.OK: self.ok,
            col.TRANSIENT: self.transient,
            col.ERROR_STAGE: self.stage,
            col.ERROR_TYPE: self.error_type,
            col.ERROR_MESSAGE: self.message,
            col.FPS: self.fps,
            col.NUM_FRAMES: self.num_frames,
            col.DURATION: self.duration,
            col.NUM_DECODE_ERRORS: self.decode_errors,
        }


class LabelledProposals:
    """Actor: batched BMN-with-classification and Soft-NMS for the videos that decoded.

    Input rows: :class:`SnippetFeatures`' output. Output rows add the top-P proposals
    (``proposals_P_...``, ``proposal_label_P``, ``proposal_valid_P``).
    """

    def __init__(self, cfg: ExtractConfig, checkpoint_uri: str | None) -> None:
        import torch

        from core.models.localizer import load_localizer

        self.cfg = cfg
        device = "cuda" if cfg.localizer.num_gpus > 0 and torch.cuda.is_available() else "cpu"
        self.localizer = load_localizer(
            cfg.model,
            checkpoint_uri=checkpoint_uri,
            class_names=cfg.localizer.class_names,
            device=device,
            dtype=cfg.localizer.dtype,
            allow_pickle=cfg.checkpoint.allow_pickle,
            seed=cfg.seed,
        )
        if cfg.pipeline.warm_up and device == "cuda":  # CUDA's kernels load now, not later
            C = int(cfg.extractor.feature_dim or cfg.model["feat_dim"])
            self.localizer.propose(np.zeros((1, C, cfg.temporal_dim), np.float32), np.ones(1))
        self.ready_at = time.time()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        ok_B = batch[col.OK].astype(bool)
        B = len(ok_B)
        P = self.localizer.top_k
        props_BP4 = np.zeros((B, P, 4), dtype=np.float64)
        label_BP = np.full((B, P), -1, dtype=np.int32)
        valid_BP = np.zeros((B, P), dtype=bool)
        idx = np.nonzero(ok_B)[0]
        if len(idx):
            out = self.localizer.propose(batch[col.FEATS][idx], batch[col.DURATION][idx])
            props_BP4[idx], label_BP[idx], valid_BP[idx] = out
        return {
            **batch,
            col.PROPOSALS: props_BP4,
            col.PROPOSAL_LABEL: label_BP,
            col.PROPOSAL_VALID: valid_BP,
            col.SECONDS_LOCALIZER: np.full(B, (time.perf_counter() - started) / max(B, 1)),
            col.LOCALIZER_READY_AT: self._ready_B(B),
        }

    def _ready_B(self, B: int) -> np.ndarray:
        """When this actor became ready, on its first output row only."""
        ready_B = np.zeros(B)
        if B and self.ready_at:
            ready_B[0], self.ready_at = self.ready_at, 0.0
        return ready_B
