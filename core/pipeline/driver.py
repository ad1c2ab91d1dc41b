"""The extract job's driver: what to process, the run record, and the Ray Data pipeline.

Ray Data stages (one row per video throughout)::

    inputs ──► pools.FeatureActor     (actor pool; decode on its CPU or with NVDEC, recognizer
                                       on its GPU share: stages.SnippetFeatures)
           ──► stages.LabelledProposals (actor pool; batched BMN-with-classification + Soft-NMS)
           ──► writer.write_batch     (task; features/proposals/errors Parquet + commit marker)

A broken video becomes one ``errors/`` row naming its stage and cause; the run goes on.

Where the time goes is in the run record: ``seconds_to_first_commit`` (start-up: Ray Data's
plan, the actors' start, the first batches through every stage), ``busy_seconds`` (each stage's
seconds summed over its calls; ``decode`` is the feature actors' time outside the recognizer),
``actor_start_seconds`` and ``videos_by_decoder``. The progress stream is this module's logger:
an INFO line every ``progress_every_s`` and a DEBUG record per committed batch whose
``committed`` and ``total`` attributes give the count and ``summary`` the batch's summary rows
(with when each video's features were done and when each actor became ready).
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from core import storage
from core.io import commits, index, leases, runs, tables
from core.io.checkpoint import file_sha256
from core.pipeline import columns as col
from core.pipeline import config, pools, stages, writer
from core.pipeline.config import ExtractConfig
from core.pipeline.inputs import VideoInput

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ExtractSummary(runs.RunSummary):
    num_damaged: int
    """Of ``num_ok``: videos that decoded only in part (``num_decode_errors`` > 0)."""
    num_left: int
    """Videos not done at the end: storage kept failing, or another live run claims them.
    Rerunning the same command processes them."""
    num_retried: int
    """Failed videos whose error rows ``--retry-failed`` took back to process them again."""
    num_proposals: int
    seconds_to_first_commit: float | None = None
    """From the start of the run to its first committed batch (None: nothing committed)."""
    busy_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    """Seconds each stage worked, summed over its actors' calls: ``decode`` (fetch, decode,
    snippets; the feature actors' time outside the recognizer), ``recognizer``,
    ``localizer``, ``write``; and ``features_cpu`` / ``features_nvdec``, the feature actors'
    whole calls by decoder."""
    videos_by_decoder: dict[str, int] = dataclasses.field(default_factory=dict)


def fingerprint(
    cfg: ExtractConfig,
    localizer_sha256: str,
    class_names: list[str],
    extractor_sha256: str = "random",
) -> str:
    """What decides a run's numbers (not its parallelism): reruns must agree on it.

    The models by content (the checkpoints' sha256), the sampling, T, the seed, the class
    names, and the precision each model runs at (bf16 moves AR@100 by about 0.01; on the CPU
    both always run float32).
    """
    import hashlib
    import json

    on_gpu = {"extractor": cfg.extractor.num_gpus > 0, "localizer": cfg.localizer.num_gpus > 0}
    # the decoder is not decisive: NVDEC and the CPU cut the same snippets, their pixels
    # differ by colour-conversion rounding (core.video.nvdec), and one run may use both
    decisive = {
        "sampling": dataclasses.asdict(cfg.sampling)
        | {"batch_size": None, "decode_threads": None, "decoder": None},
        "extractor": {k: getattr(cfg.extractor, k) for k in ("model", "output")},
        "extractor_checkpoint": extractor_sha256,
        "extractor_dtype": cfg.extractor.dtype if on_gpu["extractor"] else "float32",
        "localizer_model": cfg.model,
        "localizer_checkpoint": localizer_sha256,
        "localizer_dtype": cfg.localizer.dtype if on_gpu["localizer"] else "float32",
        "class_names": list(class_names),
        "temporal_dim": cfg.temporal_dim,
        "seed": cfg.seed,
    }
    text = json.dumps(decisive, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


MAX_PASSES = 3
"""Passes over what is left (videos whose storage failed, or whose batch attempt died)."""


def run_extract(
    cfg: ExtractConfig,
    resolved_config_text: str,
    inputs: list[VideoInput],
    output_uri: str,
    run_id: str,
    localizer_checkpoint: str | None = None,
    retry_failed: bool = False,
    progress_every_s: float = 10.0,
) -> ExtractSummary:
    """Runs the pipeline over ``inputs`` (Ray must be initialised), skipping done videos.

    Each video is committed exactly once (:mod:`core.io.commits`), whatever other runs over
    the same output do at the same time. ``localizer_checkpoint`` (``jobs.extract
    --checkpoint``) overrides the config's ``localizer.checkpoint``; ``retry_failed`` takes
    back the error rows of videos that failed for good and processes them again.
    """
    from core.models.localizer import checkpoint_facts, resolve_class_names
    from core.runtime import package_versions

    t0 = time.perf_counter()
    localizer_checkpoint = localizer_checkpoint or cfg.localizer.checkpoint
    ckpt = checkpoint_facts(localizer_checkpoint, cfg.checkpoint.allow_pickle)
    config.check_shapes(cfg, ckpt["model"] or cfg.model)
    class_names = resolve_class_names(
        int((ckpt["model"] or cfg.model).get("num_action_classes", 0)),
        ckpt["class_names"] or list(cfg.localizer.class_names),
    )
    extractor_sha256 = file_sha256(cfg.extractor.checkpoint)
    fp = fingerprint(cfg, ckpt["sha256"], class_names, extractor_sha256)
    runs.check_previous_runs(output_uri, fp)
    run_dir = storage.join(output_uri, runs.RUNS_DIR, run_id)
    storage.write_text(storage.join(run_dir, "config.py"), resolved_config_text)
    record = {
        "run_id": run_id,
        "fingerprint": fp,
        "status": "running",
        "localizer_checkpoint": ckpt,
        "extractor_checkpoint": {"uri": cfg.extractor.checkpoint, "sha256": extractor_sha256},
        "packages": package_versions(),
        "num_inputs": len(inputs),
    }
    storage.write_json(runs.record_uri(output_uri, run_id), record)
    ctx = writer.WriteContext(
        output_uri=output_uri,
        run_id=run_id,
        class_names=class_names,
        localizer_sha256=ckpt["sha256"],
        extractor_name=cfg.extractor.name,
        extractor_checkpoint=cfg.extractor.checkpoint or "random",
        sampling=dataclasses.asdict(cfg.sampling),
    )
    counts = _Counts()
    with leases.RunLease(output_uri, run_id):
        commits.recover(output_uri)
        index.apply_retractions(output_uri)
        done = index.committed_videos(output_uri)
        failed: dict[str, index.Committed] = {}
        if retry_failed:
            ever_failed = done.failed()
            failed = {v.video_id: ever_failed[v.video_id] for v in inputs
                      if v.video_id in ever_failed}  # fmt: skip
        retried = index.retract_failed(output_uri, run_id, failed)
        todo = [v for v in inputs if v.video_id not in done or v.video_id in failed]
        skipped = len(inputs) - len(todo)
        log.info("%d videos: %d already done, %d to process", len(inputs), skipped, len(todo))
        done_log = index.IndexWriter(output_uri, run_id)
        left = todo
        for attempt in range(MAX_PASSES):
            if not left:
                break
            if attempt:
                log.info("pass %d: %d videos left (storage failures or retried tasks)",
                         attempt + 1, len(left))  # fmt: skip
            _run_pass(cfg, ctx, left, localizer_checkpoint, counts, done_log, progress_every_s,
                      t0, f"{run_id}-{attempt}")  # fmt: skip
            done_log.flush()
            commits.recover(output_uri, own_run=run_id)  # this run's dead task attempts
            left = [v for v in left if v.video_id not in counts.committed]
        done_log.close()
    seconds = time.perf_counter() - t0
    summary = ExtractSummary(
        run_id=run_id,
        output_uri=output_uri,
        num_inputs=len(inputs),
        num_skipped=skipped,
        num_ok=counts.ok,
        num_failed=counts.failed,
        num_damaged=counts.damaged,
        num_left=len(left),
        num_retried=retried,
        num_proposals=counts.proposals,
        seconds=seconds,
        errors_by_stage=counts.by_stage,
        seconds_to_first_commit=counts.first_commit_s,
        busy_seconds=counts.busy_seconds(),
        videos_by_decoder=dict(counts.by_decoder),
    )
    record.update(
        status="finished",
        **{k: v for k, v in dataclasses.asdict(summary).items() if k.startswith("num_")},
        errors_by_stage=counts.by_stage,
        seconds=round(seconds, 3),
        seconds_to_first_commit=counts.first_commit_s,
        busy_seconds=summary.busy_seconds,
        actor_start_seconds=counts.actor_starts(),
        videos_by_decoder=summary.videos_by_decoder,
        videos_left=[v.video_id for v in left[:1000]],
    )
    storage.write_json(runs.record_uri(output_uri, run_id), record)
    return summary


@dataclasses.dataclass
class _Counts:
    ok: int = 0
    failed: int = 0
    damaged: int = 0
    proposals: int = 0
    by_stage: dict[str, int] = dataclasses.field(default_factory=dict)
    committed: set[str] = dataclasses.field(default_factory=set)
    first_commit_s: float | None = None
    busy: dict[str, float] = dataclasses.field(default_factory=dict)
    by_decoder: dict[str, int] = dataclasses.field(default_factory=dict)
    starts: list[float] = dataclasses.field(default_factory=list)

    def busy_seconds(self) -> dict[str, float]:
        out = {k: round(v, 3) for k, v in self.busy.items()}
        if "features" in out:
            out["decode"] = round(out.pop("features") - out.get("recognizer", 0.0), 3)
        return out

    def actor_starts(self) -> dict[str, float]:
        if not self.starts:
            return {}
        a = np.asarray(self.starts)
        return {"actors": len(a), "min": round(float(a.min()), 3),
                "median": round(float(np.median(a)), 3), "max": round(float(a.max()), 3)}  # fmt: skip

    def add(self, summary: dict) -> None:
        for stage, name in col.BUSY_COLUMNS.items():
            if name in summary:
                self.busy[stage] = self.busy.get(stage, 0.0) + float(summary[name].sum())
        if col.ACTOR_START_SECONDS in summary:
            starts = summary[col.ACTOR_START_SECONDS]
            self.starts.extend(float(v) for v in starts[starts > 0])
        mine = summary[col.COMMITTED].astype(bool)
        ok = summary[col.OK].astype(bool)
        self.ok += int((mine & ok).sum())
        self.failed += int((mine & ~ok).sum())
        self.damaged += int((mine & ok & (summary[col.NUM_DECODE_ERRORS] > 0)).sum())
        self.proposals += int(summary[col.NUM_PROPOSALS][mine].sum())
        for stage in summary[col.ERROR_STAGE][mine & ~ok]:
            self.by_stage[str(stage)] = self.by_stage.get(str(stage), 0) + 1
        if col.DECODER in summary:
            for decoder in summary[col.DECODER][mine & ok]:
                self.by_decoder[str(decoder)] = self.by_decoder.get(str(decoder), 0) + 1
            for decoder, seconds in zip(summary[col.DECODER], summary[col.SECONDS_FEATURES],
                                        strict=True):  # fmt: skip
                key = f"features_{decoder or 'unknown'}"
                self.busy[key] = self.busy.get(key, 0.0) + float(seconds)
        self.committed.update(str(v) for v in summary[tables.VIDEO_ID][mine])


def _run_pass(
    cfg: ExtractConfig,
    ctx: writer.WriteContext,
    videos: list[VideoInput],
    localizer_checkpoint: str | None,
    counts: _Counts,
    done_log: index.IndexWriter,
    progress_every_s: float,
    t0: float,
    pass_id: str,
) -> None:
    """One Ray Data pass over ``videos``: decode + features → proposals → commits."""
    import math

    import ray
    from ray.data import ActorPoolStrategy

    pool = pools.layout(cfg, pools.gpu_node_count() if cfg.pipeline.nvdec_actors_per_node else 0)
    rows = [{tables.VIDEO_ID: v.video_id, tables.URI: v.uri} for v in videos]
    # one block per call: Ray Data hands whole blocks to an actor, so larger blocks would
    # queue several calls' videos on one actor and lengthen the tail
    per_call = cfg.extractor.videos_per_call
    ds = ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / per_call))
    # a write task that fails (a storage error) is retried; its commits are idempotent
    ds.context.retried_map_errors = [writer.WriteBatchError.__name__]
    ds.context.max_map_retries = WRITE_RETRIES
    ds = ds.map_batches(
        pools.FeatureActor,
        fn_constructor_kwargs={"cfg": cfg, "slots_dir": pass_id if pool.nvdec_per_node else None},
        batch_size=per_call,
        compute=ActorPoolStrategy(
            size=pool.size,
            max_tasks_in_flight_per_actor=cfg.pipeline.tasks_in_flight_per_actor,
            max_concurrent_calls_per_actor=cfg.pipeline.calls_per_actor,
            enable_true_multi_threading=cfg.pipeline.calls_per_actor > 1,
        ),
        num_cpus=pool.num_cpus,
        num_gpus=pool.num_gpus,
    )
    ds = ds.map_batches(
        stages.LabelledProposals,
        fn_constructor_kwargs={"cfg": cfg, "checkpoint_uri": localizer_checkpoint},
        batch_size=cfg.localizer.batch_size,
        compute=ActorPoolStrategy(size=cfg.localizer.num_actors),
        num_cpus=1 if cfg.localizer.num_gpus == 0 else 0,
        num_gpus=cfg.localizer.num_gpus,
    )
    ds = ds.map_batches(
        writer.write_batch,
        fn_kwargs={"ctx": ctx},
        batch_size=cfg.write_batch_size,
        num_cpus=cfg.pipeline.write_num_cpus,
    )
    last_log = time.perf_counter()
    for summary in ds.iter_batches(batch_size=None, batch_format="numpy"):
        counts.add(summary)
        mine = summary[col.COMMITTED].astype(bool)
        done_log.add(summary[tables.VIDEO_ID][mine], summary[col.BATCH_ID][mine],
                  summary[col.OK][mine])  # fmt: skip
        if counts.first_commit_s is None and mine.any():
            counts.first_commit_s = round(time.perf_counter() - t0, 3)
            log.info("first batch committed %.1f s after the start", counts.first_commit_s)
        n = len(counts.committed)
        log.debug("committed %d/%d videos", n, len(videos),
                  extra={"committed": n, "total": len(videos), "summary": summary})  # fmt: skip
        if time.perf_counter() - last_log > progress_every_s:
            log.info("progress: %d/%d videos committed", n, len(videos))
            last_log = time.perf_counter()


WRITE_RETRIES = 4
"""Retries of a write task whose storage failed (Ray Data backs off between them)."""
