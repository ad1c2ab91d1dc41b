"""The detect job's driver: what to process, the run record, the Ray Data pipeline, the writer.

Ray Data stages (rows are keyframes; one ``end`` row per video)::

    inputs ──► stages.decode_videos (tasks; streaming decode of keyframes and their clips)
           ──► stages.PersonBoxes   (actor pool; mmdet person detector, batched across videos)
           ──► stages.ActionScores  (actor pool; MMAction2 FastRCNN, batched across clips)
           ──► writer               (here: a video's rows together, detections/errors Parquet,
                                     commit; render tasks for the videos asked for)

A broken video becomes one ``errors/`` row naming its stage and cause; the run goes on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time

from core import storage
from core.detect import stages, writer
from core.detect.config import DetectConfig
from core.io import runs
from core.io.checkpoint import file_sha256
from core.pipeline.inputs import VideoInput

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DetectSummary(runs.RunSummary):
    num_detections: int
    num_rendered: int


def fingerprint(cfg: DetectConfig, detector_sha256: str, action_sha256: str) -> str:
    """What decides a run's numbers (not its parallelism): reruns must agree on it. The
    models count by content (their checkpoints' sha256), not by URI."""
    decisive = {
        "checkpoints": [detector_sha256, action_sha256],
        "sampling": dataclasses.asdict(cfg.sampling) | {"decode_threads": None, "keyframes_per_block": None},
        "detector": {k: getattr(cfg.detector, k) for k in ("model", "checkpoint", "test_scale", "score_thr",
                                                            "category_id", "short_side", "max_persons", "dtype")},
        "action": {k: getattr(cfg.action, k) for k in ("model", "checkpoint", "label_map", "score_thr",
                                                        "channel_order", "dtype")},
        "seed": cfg.seed,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(decisive, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def render_ids(cfg: DetectConfig, inputs: list[VideoInput]) -> set[str]:
    """The videos to render: ``render.video_ids`` and the first ``render.max_videos`` inputs."""
    return set(cfg.render.video_ids) | {v.video_id for v in inputs[: cfg.render.max_videos]}


def run_detect(
    cfg: DetectConfig,
    resolved_config_text: str,
    inputs: list[VideoInput],
    output_uri: str,
    run_id: str,
    progress_every_s: float = 10.0,
) -> DetectSummary:
    """Runs the pipeline over ``inputs`` (Ray must be initialised), skipping done videos."""
    from core.eval.ava import read_label_map
    from core.runtime import package_versions

    t0 = time.perf_counter()
    labels = read_label_map(cfg.action.label_map)
    detector_sha256 = file_sha256(cfg.detector.checkpoint)
    action_sha256 = file_sha256(cfg.action.checkpoint)
    fp = fingerprint(cfg, detector_sha256, action_sha256)
    runs.check_previous_runs(output_uri, fp)
    run_dir = storage.join(output_uri, runs.RUNS_DIR, run_id)
    storage.write_text(storage.join(run_dir, "config.py"), resolved_config_text)
    ctx = writer.DetectWriteContext(
        output_uri=output_uri,
        run_id=run_id,
        label_ids=list(labels),
        label_names=list(labels.values()),
        score_thr=cfg.action.score_thr,
        detector_model=detector_sha256,
        action_model=action_sha256,
    )
    record = {
        "run_id": run_id,
        "fingerprint": fp,
        "status": "running",
        "detector_model": ctx.detector_model,
        "action_model": ctx.action_model,
        "packages": package_versions((*package_versions().keys(), "mmdet")),
        "num_inputs": len(inputs),
    }
    storage.write_json(storage.join(run_dir, "record.json"), record)
    counts = {"ok": 0, "failed": 0, "detections": 0, "rendered": 0, "skipped": 0}
    by_stage: dict[str, int] = {}
    with writer.OutputSession(output_uri, run_id) as out:
        todo = [v for v in inputs if v.video_id not in out.done]
        counts["skipped"] = len(inputs) - len(todo)
        log.info(
            "%d videos: %d already done, %d to process", len(inputs), counts["skipped"], len(todo)
        )
        if todo:
            _run_pass(
                cfg, ctx, todo, render_ids(cfg, inputs), out, counts, by_stage, progress_every_s
            )
    seconds = time.perf_counter() - t0
    record.update(
        status="finished",
        num_ok=counts["ok"],
        num_failed=counts["failed"],
        num_detections=counts["detections"],
        num_rendered=counts["rendered"],
        errors_by_stage=by_stage,
        seconds=round(seconds, 3),
    )
    storage.write_json(storage.join(run_dir, "record.json"), record)
    return DetectSummary(
        run_id=run_id,
        output_uri=output_uri,
        num_inputs=len(inputs),
        num_skipped=counts["skipped"],
        num_ok=counts["ok"],
        num_failed=counts["failed"],
        num_detections=counts["detections"],
        num_rendered=counts["rendered"],
        seconds=seconds,
        errors_by_stage=by_stage,
    )


DECODE_TASK_MEMORY = 256 * 2**20
"""Bytes a decoding task reserves (Ray's ``memory``): a block of keyframes with their clips and
one clip span of frames, for a 1080p video. Reserving it also keeps Ray Data from fusing the
decoding tasks into the detector's actors, which it does when both ask for the same resources
(the CPU-only layout): fused, videos would decode only inside the detector pool's few actors,
one video at a time each, between its detector calls."""


def build_dataset(cfg: DetectConfig, label_ids: list[int], todo: list[VideoInput]):
    """The pass's Ray Data pipeline: decode tasks, then the detector and action actor pools."""
    import ray
    from ray.data import ActorPoolStrategy

    ds = ray.data.from_items([{"video_id": v.video_id, "uri": v.uri} for v in todo])
    ds = ds.repartition(len(todo))  # one video per decoding task: they run in parallel
    ds = ds.map_batches(
        stages.decode_videos,
        fn_kwargs={"cfg": cfg},
        batch_size=1,
        num_cpus=cfg.sampling.num_cpus,
        memory=DECODE_TASK_MEMORY,
    )
    ds = ds.map_batches(
        stages.PersonBoxes,
        fn_constructor_kwargs={"cfg": cfg},
        batch_size=cfg.detector.batch_size,
        compute=ActorPoolStrategy(size=cfg.detector.num_actors),
        num_cpus=cfg.detector.num_cpus,
        num_gpus=cfg.detector.num_gpus,
    )
    return ds.map_batches(
        stages.ActionScores,
        fn_constructor_kwargs={"cfg": cfg, "label_ids": label_ids},
        batch_size=cfg.action.batch_size,
        compute=ActorPoolStrategy(size=cfg.action.num_actors),
        num_cpus=cfg.action.num_cpus,
        num_gpus=cfg.action.num_gpus,
    )


def _run_pass(
    cfg: DetectConfig,
    ctx: writer.DetectWriteContext,
    todo: list[VideoInput],
    to_render: set[str],
    out: writer.OutputSession,
    counts: dict[str, int],
    by_stage: dict[str, int],
    progress_every_s: float,
) -> None:
    """One Ray Data pass over ``todo``: decode → persons → actions → the writer (here)."""
    import ray

    from core.detect.render import render_video

    output_uri = ctx.output_uri
    render_task = ray.remote(num_cpus=1)(render_video)
    ds = build_dataset(cfg, ctx.label_ids, todo)
    assembler = writer.VideoAssembler()
    ready: list[writer.VideoResult] = []
    keyframes = [0]  # committed in this pass

    def flush() -> None:
        renders = [
            render_task.remote(
                v, storage.join(output_uri, "renders", f"{v.video_id}.mp4"), ctx.label_names,
                ctx.score_thr, cfg.sampling.predict_stepsize, cfg.render,
            )
            for v in ready if v.ok and v.video_id in to_render
        ]  # fmt: skip
        counts["rendered"] += sum(1 for n in ray.get(renders) if n)
        committed, rows = out.commit(ready, ctx)
        counts["detections"] += rows
        for v in ready:
            if v.video_id not in committed:
                continue  # claimed by another batch (a retried or concurrent run)
            counts["ok" if v.ok else "failed"] += 1
            keyframes[0] += len(v.frame_index_K)
            if not v.ok:
                by_stage[v.error_stage] = by_stage.get(v.error_stage, 0) + 1
        ready.clear()
        log.info("committed: %d/%d videos, %d keyframes", counts["ok"] + counts["failed"],
                 len(todo), keyframes[0])  # fmt: skip

    last_log = time.perf_counter()
    P, L = cfg.detector.max_persons, len(ctx.label_ids)
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for vid in assembler.add(batch):
            ready.append(assembler.pop(vid, L, P))
        if len(ready) >= cfg.write_batch_size:
            flush()
        if time.perf_counter() - last_log > progress_every_s:
            log.info("progress: %d/%d videos written", counts["ok"] + counts["failed"], len(todo))
            last_log = time.perf_counter()
    if ready:
        flush()
    if assembler.pending:
        log.warning("%d videos did not complete (rows lost); a rerun does them", assembler.pending)
