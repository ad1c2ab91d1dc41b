"""The extract pipeline: videos → snippet features → T positions → labelled proposals → Parquet.

Ray Data stages (one row per video throughout)::

    list_inputs ──► SnippetFeatures (actor pool; decode on its CPU, recognizer on its GPU share)
                ──► Localizer       (actor pool; batched BMN-with-classification + Soft-NMS)
                ──► write_batch     (task; features/proposals/errors Parquet + commit marker)

Why decode lives in the extractor actor rather than in a CPU stage of its own: decoded pixels
are about 100 times larger than the features made from them (a 224² RGB snippet is 150 KB, its
400 class scores 1.6 KB), and one long video yields thousands of snippets. A separate stage
would either ship a whole video's pixels through the object store in one row (gigabytes for an
hour of SlowOnly clips) or split videos into chunks that an all-to-all ``groupby`` must put back
together, a barrier that stops streaming and resuming. In the actor, the decoder streams
(:func:`core.video.decode.iter_snippets`), snippets of consecutive videos share recognizer
batches, and memory is bounded by one batch. The GPU is shared by fractional ``num_gpus``;
its work per snippet is a small fraction of the decode work, so many decoding actors keep it
busy (see benchmarks/extract.py).

A broken video becomes one ``errors/`` row naming its stage and cause; the run goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from typing import Literal

import numpy as np
import pyarrow as pa

from core import storage
from core.io import commits, tables
from core.pipeline.inputs import VideoInput

log = logging.getLogger(__name__)

TABLES = ("features", "proposals", "errors")

# Column names of the rows flowing between stages.
COL_FEATS = "feats_CT"
COL_OK = "ok"
COL_STAGE = "error_stage"
COL_ERR_TYPE = "error_type"
COL_ERR_MSG = "error_message"
COL_FPS = "fps"
COL_FRAMES = "num_frames"
COL_DURATION = "duration"
COL_SNIPPETS = "num_snippets"
COL_PROPS = "proposals_P4"  # t_start, t_end, score, label_score
COL_PROP_LABEL = "proposal_label_P"
COL_PROP_VALID = "proposal_valid_P"


@dataclasses.dataclass
class SamplingSection:
    """Snippet sampling, MMAction2's names (see core.video.decode.SamplingConfig)."""

    clip_len: int = 1
    clip_interval: int = 16
    frame_interval: int = 1
    short_side: int = 256
    crop_size: int = 224
    batch_size: int = 32
    decode_threads: int = 1


@dataclasses.dataclass
class ExtractorSection:
    """The snippet feature extractor: an MMAction2 recognizer."""

    model: dict
    """MMAction2 recognizer config (``type='Recognizer2D'`` / ``'Recognizer3D'`` ...)."""
    checkpoint: str | None = None
    """URI of the recognizer's weights; None = random weights (tests, demos)."""
    output: Literal["scores", "pooled"] = "scores"
    """``scores``: softmax class scores (TSN-style 400-d); ``pooled``: pooled backbone features."""
    batch_size: int = 64
    """Snippets per forward pass, across videos."""
    num_actors: int = 2
    """Decoding + extracting actors; each reserves one CPU."""
    num_gpus: float = 0.0
    """GPU share per actor (e.g. 1/12 with 12 actors on one GPU); 0 on CPU."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Autocast dtype on CUDA (CPU always runs float32)."""
    videos_per_call: int = 4
    """Videos handed to an actor at a time (their snippets share batches)."""


@dataclasses.dataclass
class LocalizerSection:
    """The BMN-with-classification localizer."""

    model: dict
    """MMAction2-style model dict, ``type='BMNwActionCls'``."""
    checkpoint: str | None = None
    """URI of a checkpoint written by jobs.train (``best.pth``); None = random weights."""
    class_names: list[str] = dataclasses.field(default_factory=list)
    """Names of the action classes; a checkpoint's own list takes precedence."""
    batch_size: int = 64
    num_actors: int = 1
    num_gpus: float = 0.0
    dtype: Literal["float32", "tf32", "bfloat16"] = "float32"
    """Inference precision on CUDA (see core.models.localizer.Localizer); CPU runs float32."""


@dataclasses.dataclass
class CheckpointSection:
    allow_pickle: bool = False
    """Allow checkpoints that need pickle (arbitrary code at load). Only for trusted files."""


@dataclasses.dataclass
class StorageSection:
    endpoint_url: str | None = None
    """S3-compatible endpoint (MinIO, ...); None = AWS's default or AWS_ENDPOINT_URL_S3."""


@dataclasses.dataclass
class ExtractConfig:
    """The extract job's config schema (configs/extract/*.py)."""

    extractor: ExtractorSection
    localizer: LocalizerSection
    sampling: SamplingSection = dataclasses.field(default_factory=SamplingSection)
    temporal_dim: int = 100
    """T: positions each video's features are rescaled to."""
    write_batch_size: int = 64
    """Videos per committed Parquet file."""
    seed: int = 0
    checkpoint: CheckpointSection = dataclasses.field(default_factory=CheckpointSection)
    storage: StorageSection = dataclasses.field(default_factory=StorageSection)


# ----------------------------------------------------------------------------- stage 1


def limit_cpu_threads(n: int) -> None:
    """Keeps an actor's OpenCV and torch CPU thread pools to the CPUs it reserved: by default
    each sizes itself to the whole node, and a dozen actors per node oversubscribe it."""
    import cv2
    import torch

    cv2.setNumThreads(n)
    torch.set_num_threads(n)


def _empty_result(n: int) -> dict[str, list]:
    keys = (COL_OK, COL_STAGE, COL_ERR_TYPE, COL_ERR_MSG, COL_FPS, COL_FRAMES, COL_DURATION)
    return {k: [None] * n for k in (*keys, COL_SNIPPETS)}


class SnippetFeatures:
    """Actor: decodes its videos and turns their snippets into features rescaled to T.

    Input rows: ``video_id``, ``uri``. Output rows add ``feats_CT`` (float32, zeros when the
    video failed), ``ok``, the error columns, and the video's fps, frames, duration, snippets.
    """

    def __init__(self, cfg: ExtractConfig) -> None:
        import torch

        from core.features.extractor import ExtractorConfig, FeatureExtractor
        from core.video.decode import SamplingConfig

        self.cfg = cfg
        self.sampling = SamplingConfig(**dataclasses.asdict(cfg.sampling))
        limit_cpu_threads(max(1, cfg.sampling.decode_threads))
        section = cfg.extractor
        use_cuda = section.num_gpus > 0 and torch.cuda.is_available()
        self.extractor = FeatureExtractor(
            ExtractorConfig(
                model=section.model,
                checkpoint=section.checkpoint,
                output=section.output,
                device="cuda" if use_cuda else "cpu",
                dtype=section.dtype if use_cuda else "float32",
                max_batch=section.batch_size,
                seed=cfg.seed,
                allow_pickle=cfg.checkpoint.allow_pickle,
            )
        )
        self.feat_dim = self.extractor.feature_dim

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from core.features.rescale import rescale_features

        ids, uris = list(batch[tables.VIDEO_ID]), list(batch[tables.URI])
        result = _empty_result(len(ids))
        feats: list[list[np.ndarray]] = [[] for _ in ids]
        pending: list[tuple[int, np.ndarray]] = []  # (video index, clips_NTHWC)
        for i, uri in enumerate(uris):
            ok = self._decode(i, uri, result, pending, feats)
            if ok and sum(len(c) for _, c in pending) >= self.cfg.extractor.batch_size:
                self._flush(pending, feats, result)
        self._flush(pending, feats, result)
        T = self.cfg.temporal_dim
        out = np.zeros((len(ids), self.feat_dim, T), dtype=np.float32)
        for i in range(len(ids)):
            if result[COL_OK][i]:
                feats_NC = np.concatenate(feats[i], axis=0)
                result[COL_SNIPPETS][i] = len(feats_NC)
                out[i] = rescale_features(feats_NC, T)
            else:
                result[COL_SNIPPETS][i] = 0
        return {
            tables.VIDEO_ID: np.asarray(ids, dtype=object),
            tables.URI: np.asarray(uris, dtype=object),
            COL_FEATS: out,
            COL_OK: np.asarray(result[COL_OK], dtype=bool),
            COL_STAGE: np.asarray(result[COL_STAGE], dtype=object),
            COL_ERR_TYPE: np.asarray(result[COL_ERR_TYPE], dtype=object),
            COL_ERR_MSG: np.asarray(result[COL_ERR_MSG], dtype=object),
            COL_FPS: np.asarray(result[COL_FPS], dtype=np.float64),
            COL_FRAMES: np.asarray(result[COL_FRAMES], dtype=np.int64),
            COL_DURATION: np.asarray(result[COL_DURATION], dtype=np.float64),
            COL_SNIPPETS: np.asarray(result[COL_SNIPPETS], dtype=np.int32),
        }

    def _decode(self, i, uri, result, pending, feats) -> bool:
        """Streams video ``i`` into ``pending``; records its facts or its error."""
        from core.video.decode import VideoDecodeError, iter_snippets

        try:
            with storage.local_path(uri) as path:
                last = None
                for snippets in iter_snippets(path, self.sampling):
                    pending.append((i, snippets.clips_NTHWC))
                    last = snippets
                    if sum(len(c) for _, c in pending) >= self.cfg.extractor.batch_size:
                        self._flush(pending, feats, result)
        except VideoDecodeError as e:
            self._fail(i, result, "decode", e.reason, e.message)
            return False
        except FileNotFoundError as e:
            self._fail(i, result, "read", "not_found", str(e))
            return False
        except Exception as e:  # noqa: BLE001  (any per-video failure is an error row)
            log.exception("decoding %s failed", uri)
            self._fail(i, result, "decode", type(e).__name__, str(e))
            return False
        result[COL_OK][i] = True
        result[COL_FPS][i] = float(last.info.fps)
        result[COL_FRAMES][i] = int(last.num_frames)
        result[COL_DURATION][i] = float(last.duration)
        result[COL_STAGE][i] = result[COL_ERR_TYPE][i] = result[COL_ERR_MSG][i] = ""
        return True

    @staticmethod
    def _fail(i: int, result: dict, stage: str, error_type: str, message: str) -> None:
        result[COL_OK][i] = False
        result[COL_STAGE][i], result[COL_ERR_TYPE][i], result[COL_ERR_MSG][i] = (
            stage,
            error_type,
            message[:2000],
        )
        result[COL_FPS][i], result[COL_FRAMES][i], result[COL_DURATION][i] = 0.0, 0, 0.0

    def _flush(self, pending, feats, result) -> None:
        """Runs the recognizer over the pending snippets (of one or more videos)."""
        if not pending:
            return
        clips_NTHWC = np.concatenate([c for _, c in pending], axis=0)
        feats_NC = self.extractor.extract(clips_NTHWC)
        start = 0
        for i, clips in pending:
            feats[i].append(feats_NC[start : start + len(clips)])
            start += len(clips)
        pending.clear()


# ----------------------------------------------------------------------------- stage 2


class Localizer:
    """Actor: batched BMN-with-classification and Soft-NMS for the videos that decoded."""

    def __init__(self, cfg: ExtractConfig, checkpoint_uri: str | None) -> None:
        import torch

        from core.models.localizer import load_localizer

        self.cfg = cfg
        device = "cuda" if cfg.localizer.num_gpus > 0 and torch.cuda.is_available() else "cpu"
        self.localizer = load_localizer(
            cfg.localizer.model,
            checkpoint_uri=checkpoint_uri,
            class_names=cfg.localizer.class_names,
            device=device,
            dtype=cfg.localizer.dtype,
            allow_pickle=cfg.checkpoint.allow_pickle,
            seed=cfg.seed,
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok_B = batch[COL_OK].astype(bool)
        B = len(ok_B)
        P = self.localizer.top_k
        props_BP4 = np.zeros((B, P, 4), dtype=np.float64)
        label_BP = np.full((B, P), -1, dtype=np.int32)
        valid_BP = np.zeros((B, P), dtype=bool)
        idx = np.nonzero(ok_B)[0]
        if len(idx):
            out = self.localizer.propose(batch[COL_FEATS][idx], batch[COL_DURATION][idx])
            props_BP4[idx], label_BP[idx], valid_BP[idx] = out
        batch = dict(batch)
        batch.update({COL_PROPS: props_BP4, COL_PROP_LABEL: label_BP, COL_PROP_VALID: valid_BP})
        return batch


# ----------------------------------------------------------------------------- stage 3


@dataclasses.dataclass(frozen=True)
class WriteContext:
    output_uri: str
    run_id: str
    class_names: list[str]
    model_tag: str
    extractor_name: str
    extractor_checkpoint: str


def write_batch(batch: dict[str, np.ndarray], ctx: WriteContext) -> dict[str, np.ndarray]:
    """Writes one batch's three tables and commits them; returns one summary row per video."""
    ids = [str(v) for v in batch[tables.VIDEO_ID]]
    ok_B = batch[COL_OK].astype(bool)
    features = _features_table(batch, ok_B, ctx)
    proposals = _proposals_table(batch, ok_B, ctx)
    errors = _errors_table(batch, ok_B)
    commits.commit_batch(
        ctx.output_uri,
        ctx.run_id,
        uuid.uuid4().hex,
        {"features": features, "proposals": proposals, "errors": errors},
        ids,
    )
    num_props = batch[COL_PROP_VALID].sum(axis=1).astype(np.int32)
    return {
        tables.VIDEO_ID: np.asarray(ids, dtype=object),
        COL_OK: ok_B,
        "num_proposals": num_props,
        COL_STAGE: np.asarray(batch[COL_STAGE], dtype=object),
    }


def _features_table(batch, ok_B, ctx: WriteContext) -> pa.Table:
    feats_BCT = batch[COL_FEATS][ok_B]
    B, C, T = feats_BCT.shape if len(feats_BCT) else (0, 0, 0)
    flat = pa.array(feats_BCT.reshape(B, C * T).astype(np.float32).tolist(), pa.list_(pa.float32()))
    return pa.table(
        {
            tables.VIDEO_ID: pa.array(batch[tables.VIDEO_ID][ok_B].tolist(), pa.string()),
            tables.URI: pa.array(batch[tables.URI][ok_B].tolist(), pa.string()),
            "features": flat,
            "C": pa.array([C] * B, pa.int32()),
            "T": pa.array([T] * B, pa.int32()),
            "duration": pa.array(batch[COL_DURATION][ok_B], pa.float64()),
            "fps": pa.array(batch[COL_FPS][ok_B], pa.float64()),
            "num_frames": pa.array(batch[COL_FRAMES][ok_B], pa.int64()),
            "num_snippets": pa.array(batch[COL_SNIPPETS][ok_B], pa.int32()),
            "extractor": pa.array([ctx.extractor_name] * B, pa.string()),
            "extractor_checkpoint": pa.array([ctx.extractor_checkpoint] * B, pa.string()),
        },
        schema=tables.FEATURES_SCHEMA,
    )


def _proposals_table(batch, ok_B, ctx: WriteContext) -> pa.Table:
    valid_BP = batch[COL_PROP_VALID] & ok_B[:, None]
    b_idx, p_idx = np.nonzero(valid_BP)
    props = batch[COL_PROPS][b_idx, p_idx]
    label_ids = batch[COL_PROP_LABEL][b_idx, p_idx].astype(np.int32)
    names = np.asarray([*ctx.class_names, ""], dtype=object)
    return pa.table(
        {
            tables.VIDEO_ID: pa.array(batch[tables.VIDEO_ID][b_idx].tolist(), pa.string()),
            "t_start": pa.array(props[:, 0], pa.float64()),
            "t_end": pa.array(props[:, 1], pa.float64()),
            "score": pa.array(props[:, 2].astype(np.float32), pa.float32()),
            "label": pa.array(names[label_ids].tolist(), pa.string()),
            "label_id": pa.array(label_ids, pa.int32()),
            "label_score": pa.array(props[:, 3].astype(np.float32), pa.float32()),
            "rank": pa.array(p_idx.astype(np.int32), pa.int32()),
            "duration": pa.array(batch[COL_DURATION][b_idx], pa.float64()),
            "model": pa.array([ctx.model_tag] * len(b_idx), pa.string()),
        },
        schema=tables.PROPOSALS_SCHEMA,
    )


def _errors_table(batch, ok_B) -> pa.Table:
    bad = ~ok_B
    return pa.table(
        {
            tables.VIDEO_ID: pa.array(batch[tables.VIDEO_ID][bad].tolist(), pa.string()),
            tables.URI: pa.array(batch[tables.URI][bad].tolist(), pa.string()),
            "stage": pa.array(batch[COL_STAGE][bad].tolist(), pa.string()),
            "error_type": pa.array(batch[COL_ERR_TYPE][bad].tolist(), pa.string()),
            "message": pa.array(batch[COL_ERR_MSG][bad].tolist(), pa.string()),
        },
        schema=tables.ERRORS_SCHEMA,
    )


# ----------------------------------------------------------------------------- driver


class OutputConflictError(RuntimeError):
    """The output already holds results of a different config or checkpoint."""


@dataclasses.dataclass
class ExtractSummary:
    run_id: str
    output_uri: str
    num_inputs: int
    num_skipped: int
    num_ok: int
    num_failed: int
    num_proposals: int
    seconds: float
    errors_by_stage: dict[str, int]


def fingerprint(cfg: ExtractConfig, localizer_sha256: str) -> str:
    """What decides a run's numbers (not its parallelism): reruns must agree on it."""
    import hashlib
    import json

    decisive = {
        "sampling": dataclasses.asdict(cfg.sampling) | {"batch_size": None, "decode_threads": None},
        "extractor": {k: getattr(cfg.extractor, k) for k in ("model", "checkpoint", "output")},
        "localizer_model": cfg.localizer.model,
        "localizer_checkpoint": localizer_sha256,
        "temporal_dim": cfg.temporal_dim,
        "seed": cfg.seed,
    }
    text = json.dumps(decisive, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_shapes(cfg: ExtractConfig, localizer_model: dict) -> None:
    """The localizer must take what the extractor makes: C from the recognizer's head, T.

    Raises:
        ConfigError: naming the keys that disagree.
    """
    from core.config import ConfigError

    head = cfg.extractor.model.get("cls_head", {})
    key = "num_classes" if cfg.extractor.output == "scores" else "in_channels"
    made = head.get(key)
    wanted = localizer_model.get("feat_dim")
    if made is not None and made != wanted:
        raise ConfigError(
            f"extractor.output='{cfg.extractor.output}' makes {made}-d features "
            f"(extractor.model.cls_head.{key}) but the localizer's feat_dim is {wanted}"
        )
    if localizer_model.get("temporal_dim") != cfg.temporal_dim:
        raise ConfigError(
            f"temporal_dim={cfg.temporal_dim} but the localizer's temporal_dim is "
            f"{localizer_model.get('temporal_dim')}"
        )


def _check_previous_runs(output_uri: str, fp: str) -> None:
    base = storage.join(output_uri, commits.RUNS_DIR)
    if not storage.exists(base):
        return
    for uri in storage.list_files(base, (".json",)):
        if not uri.endswith("record.json"):
            continue
        record = storage.read_json(uri)
        if record.get("fingerprint") not in (None, fp):
            raise OutputConflictError(
                f"{output_uri} already holds results of run {record.get('run_id')} made with "
                "another config or checkpoint; write to a new --output (or delete the old one)"
            )


def run_extract(
    cfg: ExtractConfig,
    resolved_config_text: str,
    inputs: list[VideoInput],
    output_uri: str,
    run_id: str,
    localizer_checkpoint: str | None = None,
    progress_every_s: float = 10.0,
) -> ExtractSummary:
    """Runs the pipeline over ``inputs`` (Ray must be initialised), skipping done videos."""
    import ray
    from ray.data import ActorPoolStrategy

    from core.models.localizer import checkpoint_facts, resolve_class_names
    from core.runtime import package_versions

    t0 = time.perf_counter()
    ckpt = checkpoint_facts(localizer_checkpoint, cfg.checkpoint.allow_pickle)
    check_shapes(cfg, ckpt["model"] or cfg.localizer.model)
    fp = fingerprint(cfg, ckpt["sha256"])
    _check_previous_runs(output_uri, fp)
    commits.remove_orphans(output_uri, TABLES)
    done = commits.committed_video_ids(output_uri)
    todo = [v for v in inputs if v.video_id not in done]
    log.info(
        "%d videos: %d already done, %d to process", len(inputs), len(inputs) - len(todo), len(todo)
    )
    run_dir = storage.join(output_uri, commits.RUNS_DIR, run_id)
    storage.write_text(storage.join(run_dir, "config.py"), resolved_config_text)
    record = {
        "run_id": run_id,
        "fingerprint": fp,
        "status": "running",
        "localizer_checkpoint": ckpt,
        "extractor_checkpoint": cfg.extractor.checkpoint or "random",
        "packages": package_versions(),
        "num_inputs": len(inputs),
        "num_skipped": len(inputs) - len(todo),
    }
    storage.write_json(storage.join(run_dir, "record.json"), record)

    ctx = WriteContext(
        output_uri=output_uri,
        run_id=run_id,
        class_names=resolve_class_names(
            int((ckpt["model"] or cfg.localizer.model).get("num_action_classes", 0)),
            ckpt["class_names"] or list(cfg.localizer.class_names),
        ),
        model_tag=ckpt["sha256"],
        extractor_name=str(cfg.extractor.model.get("type", "recognizer"))
        + "/"
        + cfg.extractor.output,
        extractor_checkpoint=cfg.extractor.checkpoint or "random",
    )
    counts = {"ok": 0, "failed": 0, "proposals": 0}
    by_stage: dict[str, int] = {}
    if todo:
        ds = ray.data.from_items([{tables.VIDEO_ID: v.video_id, tables.URI: v.uri} for v in todo])
        ds = ds.map_batches(
            SnippetFeatures,
            fn_constructor_kwargs={"cfg": cfg},
            batch_size=cfg.extractor.videos_per_call,
            compute=ActorPoolStrategy(size=cfg.extractor.num_actors),
            num_cpus=1,
            num_gpus=cfg.extractor.num_gpus,
        )
        ds = ds.map_batches(
            Localizer,
            fn_constructor_kwargs={"cfg": cfg, "checkpoint_uri": localizer_checkpoint},
            batch_size=cfg.localizer.batch_size,
            compute=ActorPoolStrategy(size=cfg.localizer.num_actors),
            num_cpus=1 if cfg.localizer.num_gpus == 0 else 0,
            num_gpus=cfg.localizer.num_gpus,
        )
        ds = ds.map_batches(write_batch, fn_kwargs={"ctx": ctx}, batch_size=cfg.write_batch_size)
        last_log = time.perf_counter()
        for summary in ds.iter_batches(batch_size=None, batch_format="numpy"):
            ok = summary[COL_OK].astype(bool)
            counts["ok"] += int(ok.sum())
            counts["failed"] += int((~ok).sum())
            counts["proposals"] += int(summary["num_proposals"].sum())
            for stage in summary[COL_STAGE][~ok]:
                by_stage[str(stage)] = by_stage.get(str(stage), 0) + 1
            if time.perf_counter() - last_log > progress_every_s:
                done_now = counts["ok"] + counts["failed"]
                log.info("progress: %d/%d videos written", done_now, len(todo))
                last_log = time.perf_counter()
    seconds = time.perf_counter() - t0
    record.update(
        status="finished",
        num_ok=counts["ok"],
        num_failed=counts["failed"],
        num_proposals=counts["proposals"],
        errors_by_stage=by_stage,
        seconds=round(seconds, 3),
        videos_per_second=round((counts["ok"] + counts["failed"]) / seconds, 4)
        if seconds
        else None,
    )
    storage.write_json(storage.join(run_dir, "record.json"), record)
    return ExtractSummary(
        run_id=run_id,
        output_uri=output_uri,
        num_inputs=len(inputs),
        num_skipped=len(inputs) - len(todo),
        num_ok=counts["ok"],
        num_failed=counts["failed"],
        num_proposals=counts["proposals"],
        seconds=seconds,
        errors_by_stage=by_stage,
    )
