"""The extract job's driver: what to process, the run record, and the Ray Data pipeline.

Ray Data stages (one row per video throughout)::

    inputs ──► stages.SnippetFeatures (actor pool; decode on its CPU, recognizer on its GPU share)
           ──► stages.Proposals       (actor pool; batched BMN-with-classification + Soft-NMS)
           ──► writer.write_batch     (task; features/proposals/errors Parquet + commit marker)

A broken video becomes one ``errors/`` row naming its stage and cause; the run goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from core import storage
from core.io import commits, tables
from core.pipeline import columns as col
from core.pipeline import config, stages, writer
from core.pipeline.config import ExtractConfig
from core.pipeline.inputs import VideoInput

log = logging.getLogger(__name__)


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
        "localizer_model": cfg.model,
        "localizer_checkpoint": localizer_sha256,
        "temporal_dim": cfg.temporal_dim,
        "seed": cfg.seed,
    }
    text = json.dumps(decisive, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
    """Runs the pipeline over ``inputs`` (Ray must be initialised), skipping done videos.

    ``localizer_checkpoint`` (``jobs.extract --checkpoint``) overrides the config's
    ``localizer.checkpoint``.
    """
    import ray
    from ray.data import ActorPoolStrategy

    from core.models.localizer import checkpoint_facts, resolve_class_names
    from core.runtime import package_versions

    t0 = time.perf_counter()
    localizer_checkpoint = localizer_checkpoint or cfg.localizer.checkpoint
    ckpt = checkpoint_facts(localizer_checkpoint, cfg.checkpoint.allow_pickle)
    config.check_shapes(cfg, ckpt["model"] or cfg.model)
    fp = fingerprint(cfg, ckpt["sha256"])
    _check_previous_runs(output_uri, fp)
    commits.remove_orphans(output_uri, writer.TABLES)
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

    ctx = writer.WriteContext(
        output_uri=output_uri,
        run_id=run_id,
        class_names=resolve_class_names(
            int((ckpt["model"] or cfg.model).get("num_action_classes", 0)),
            ckpt["class_names"] or list(cfg.localizer.class_names),
        ),
        localizer_sha256=ckpt["sha256"],
        extractor_name=cfg.extractor.name,
        extractor_checkpoint=cfg.extractor.checkpoint or "random",
    )
    counts = {"ok": 0, "failed": 0, "proposals": 0}
    by_stage: dict[str, int] = {}
    if todo:
        ds = ray.data.from_items([{tables.VIDEO_ID: v.video_id, tables.URI: v.uri} for v in todo])
        ds = ds.map_batches(
            stages.SnippetFeatures,
            fn_constructor_kwargs={"cfg": cfg},
            batch_size=cfg.extractor.videos_per_call,
            compute=ActorPoolStrategy(size=cfg.extractor.num_actors),
            num_cpus=1,
            num_gpus=cfg.extractor.num_gpus,
        )
        ds = ds.map_batches(
            stages.Proposals,
            fn_constructor_kwargs={"cfg": cfg, "checkpoint_uri": localizer_checkpoint},
            batch_size=cfg.localizer.batch_size,
            compute=ActorPoolStrategy(size=cfg.localizer.num_actors),
            num_cpus=1 if cfg.localizer.num_gpus == 0 else 0,
            num_gpus=cfg.localizer.num_gpus,
        )
        ds = ds.map_batches(
            writer.write_batch, fn_kwargs={"ctx": ctx}, batch_size=cfg.write_batch_size
        )
        last_log = time.perf_counter()
        for summary in ds.iter_batches(batch_size=None, batch_format="numpy"):
            ok = summary[col.OK].astype(bool)
            counts["ok"] += int(ok.sum())
            counts["failed"] += int((~ok).sum())
            counts["proposals"] += int(summary[col.NUM_PROPOSALS].sum())
            for stage in summary[col.ERROR_STAGE][~ok]:
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
