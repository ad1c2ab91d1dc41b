"""The extract job's driver: what to process, the run record, and the Ray Data pipeline.

Ray Data stages (one row per video throughout)::

    inputs ──► stages.SnippetFeatures (actor pool; decode on its CPU, recognizer on its GPU share)
           ──► stages.LabelledProposals (actor pool; batched BMN-with-classification + Soft-NMS)
           ──► writer.write_batch     (task; features/proposals/errors Parquet + commit marker)

A broken video becomes one ``errors/`` row naming its stage and cause; the run goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from core import storage
from core.io import commits, index, leases, runs, tables
from core.io.checkpoint import file_sha256
from core.pipeline import columns as col
from core.pipeline import config, stages, writer
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
    decisive = {
        "sampling": dataclasses.asdict(cfg.sampling) | {"batch_size": None, "decode_threads": None},
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
            _run_pass(cfg, ctx, left, localizer_checkpoint, counts, done_log, progress_every_s)
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
    )
    record.update(
        status="finished",
        **{k: v for k, v in dataclasses.asdict(summary).items() if k.startswith("num_")},
        errors_by_stage=counts.by_stage,
        seconds=round(seconds, 3),
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

    def add(self, summary: dict) -> None:
        mine = summary[col.COMMITTED].astype(bool)
        ok = summary[col.OK].astype(bool)
        self.ok += int((mine & ok).sum())
        self.failed += int((mine & ~ok).sum())
        self.damaged += int((mine & ok & (summary[col.NUM_DECODE_ERRORS] > 0)).sum())
        self.proposals += int(summary[col.NUM_PROPOSALS][mine].sum())
        for stage in summary[col.ERROR_STAGE][mine & ~ok]:
            self.by_stage[str(stage)] = self.by_stage.get(str(stage), 0) + 1
        self.committed.update(str(v) for v in summary[tables.VIDEO_ID][mine])


def _run_pass(
    cfg: ExtractConfig,
    ctx: writer.WriteContext,
    videos: list[VideoInput],
    localizer_checkpoint: str | None,
    counts: _Counts,
    done_log: index.IndexWriter,
    progress_every_s: float,
) -> None:
    """One Ray Data pass over ``videos``: decode + features → proposals → commits."""
    import ray
    from ray.data import ActorPoolStrategy

    ds = ray.data.from_items([{tables.VIDEO_ID: v.video_id, tables.URI: v.uri} for v in videos])
    ds = ds.map_batches(
        stages.SnippetFeatures,
        fn_constructor_kwargs={"cfg": cfg},
        batch_size=cfg.extractor.videos_per_call,
        compute=ActorPoolStrategy(size=cfg.extractor.num_actors),
        num_cpus=1,
        num_gpus=cfg.extractor.num_gpus,
    )
    ds = ds.map_batches(
        stages.LabelledProposals,
        fn_constructor_kwargs={"cfg": cfg, "checkpoint_uri": localizer_checkpoint},
        batch_size=cfg.localizer.batch_size,
        compute=ActorPoolStrategy(size=cfg.localizer.num_actors),
        num_cpus=1 if cfg.localizer.num_gpus == 0 else 0,
        num_gpus=cfg.localizer.num_gpus,
    )
    # a write task that fails (a storage error) is retried; its commits are idempotent
    ds = ds.map_batches(
        writer.write_batch,
        fn_kwargs={"ctx": ctx},
        batch_size=cfg.write_batch_size,
        max_retries=4,
        retry_exceptions=True,
    )
    last_log = time.perf_counter()
    for summary in ds.iter_batches(batch_size=None, batch_format="numpy"):
        counts.add(summary)
        mine = summary[col.COMMITTED].astype(bool)
        done_log.add(summary[tables.VIDEO_ID][mine], summary[col.BATCH_ID][mine],
                  summary[col.OK][mine])  # fmt: skip
        if time.perf_counter() - last_log > progress_every_s:
            log.info("progress: %d/%d videos committed", len(counts.committed), len(videos))
            last_log = time.perf_counter()
