"""Train: features Parquet + annotations → BMN-with-classification on Ray Train → best.pth.

    python -m jobs.train --config configs/train/demo.py --features OUT --annotations ANNO.json \
        --output RUN [--num-workers N] [--use-gpu] [--resume] [--cfg-options k=v ...]

``--features`` is an extract / import_features output (its ``features/`` table) or the table
folder itself. Writes RUN/checkpoints/ (Ray Train's), RUN/best.pth (what ``jobs.extract
--checkpoint`` takes), RUN/metrics.json (with per-class AP and the labels' confusion matrix),
RUN/ar_an.png, RUN/per_class_ap.png, RUN/confusion.png, RUN/timelines.png (ground truth against
the top proposals of a few validation videos), RUN/training_curves.png, RUN/history.json and
RUN/config.py. ``--resume`` continues RUN's run from its latest
checkpoint. Runs embedded (a local Ray starts) or under ``ray job submit --working-dir .``.
Exit codes: 0 done (or stopped by ``stop_after_epoch``), 1 training failed, 2 unusable input,
config or output.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import threading
import time

from core import config, runtime, storage
from core.train.config import TrainConfig, validate_train_config

log = logging.getLogger("jobs.train")
HEALTH_CHECK_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"  # how often Ray Train polls its workers
OBJECT_STORE_BYTES = 2 * 2**30  # the embedded Ray's object store: configs and reports only


def embedded_ray_env() -> dict[str, str]:
    """Settings of the embedded Ray (ray 2.60, read from the environment by its processes):
    its controller polls a finished run sooner (every 0.5 s, default 2 s); no idle worker
    processes prestarted per CPU (Ray Train's actors set env vars, so each gets a process of
    its own: the prestarted ones, 16 on a 16-core node, only compete with them as the run
    starts); an object store of at most 2 GiB instead of 30% of memory (setting up a large
    one is part of Ray's start); no preemption watcher (an actor that polls whether the
    cluster drains a node: a Ray on one machine that ends with the job drains none) and no
    Ray Train metrics (exported for a dashboard the embedded Ray does not start; their module
    is an import of its own in the worker, on the way to the first step)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 0
    env = {HEALTH_CHECK_ENV: "0.5", "RAY_prestart_worker_first_driver": "false",
           "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_METRICS_ENABLED": "0"}  # fmt: skip
    if memory > 0:
        share = min(0.3, OBJECT_STORE_BYTES / memory)
        env["RAY_DEFAULT_OBJECT_STORE_MEMORY_PROPORTION"] = f"{share:.4f}"
    return env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    config.add_config_args(parser)
    parser.add_argument("--features", required=True, help="features Parquet URI")
    parser.add_argument("--annotations", required=True, help="ActivityNet or MMAction2 JSON URI")
    parser.add_argument("--output", required=True, help="run output URI (local or s3://)")
    parser.add_argument("--num-workers", type=int, default=None, help="Ray Train workers")
    parser.add_argument("--use-gpu", action="store_true", help="one GPU per worker (NCCL)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output")
    parser.add_argument("--num-cpus", type=int, default=None, help="embedded Ray only")
    return parser.parse_args(argv)


def cli_overrides(args: argparse.Namespace) -> dict:
    """--cfg-options plus the flags that are config keys (so config.py records them)."""
    options = dict(args.cfg_options or {})
    if args.num_workers is not None:
        options["scaling.num_workers"] = args.num_workers
    if args.use_gpu:
        options["scaling.use_gpu"] = True
    return options


def embedded_cpus(cfg: TrainConfig, requested: int | None) -> int:
    """Logical CPUs for an embedded Ray: the workers' share plus one for the final task (when
    the driver runs it: see core.train.trainer)."""
    needed = int(cfg.scaling.num_workers * cfg.scaling.cpus_per_worker) + 1
    return requested or max(os.cpu_count() or 1, needed)


WARM_MIN_CPUS = 8


def warm_hook() -> str | None:
    """The embedded Ray's worker setup hook (:mod:`core.train.warm`: torch imported from the
    start of each training worker's process), on nodes of at least 8 cores: on fewer, the
    background import competes for the cores with the worker's own start as an actor."""
    if (os.cpu_count() or 1) < WARM_MIN_CPUS:
        return None
    from core.train.warm import HOOK

    return HOOK


def process_timings(main_started_at: float, started: float) -> dict[str, float]:
    """``time_to_main_s`` (the interpreter's start and this module's imports, where /proc
    tells), ``time_config_s`` (until Ray's start) and ``finished_at_unix`` (now)."""
    from core.train.worker import process_started_at

    out = {"time_config_s": time.time() - main_started_at - (time.perf_counter() - started)}
    process_start = process_started_at()
    if process_start is not None:
        out["time_to_main_s"] = main_started_at - process_start
    return {**out, "finished_at_unix": time.time()}


def main(argv: list[str] | None = None) -> int:
    main_started_at = time.time()
    args = parse_args(argv)
    runtime.setup_logging()
    try:
        cfg, raw = config.load(args.config, TrainConfig, cli_overrides(args))
        validate_train_config(cfg)
        storage.set_s3_endpoint(cfg.storage.endpoint_url)
    except (config.ConfigError, ValueError) as e:
        log.error("%s", e)
        return 2
    start = time.perf_counter()
    if not os.environ.get("RAY_ADDRESS"):  # an embedded Ray (what the user set wins), set
        for key, value in embedded_ray_env().items():  # before anything imports ray
            os.environ.setdefault(key, value)
    # Ray's own import first, then the trainer's imports (torch, pyarrow) in a second thread
    # while Ray starts: beside Ray's import they would hold the GIL it needs, and delay Ray's
    # GCS with it
    import ray  # noqa: F401

    importer = threading.Thread(target=importlib.import_module, args=("core.train.trainer",))
    importer.start()
    runtime.init_ray(num_cpus=embedded_cpus(cfg, args.num_cpus), setup_hook=warm_hook())
    ray_seconds = time.perf_counter() - start
    importer.join()
    from core.train.data import TrainDataError
    from core.train.trainer import TrainRunError, run_training, summary_json

    try:
        summary = run_training(
            cfg, raw, args.features, args.annotations, args.output, resume=args.resume
        )
    except (TrainDataError, TrainRunError, config.ConfigError, ValueError) as e:
        log.error("%s", e)
        return 2
    except FileNotFoundError as e:
        log.error("not found: %s", e)
        return 2
    except Exception as e:  # ray.train.TrainingFailedError and what the workers raised
        log.error("training failed: %s: %s", type(e).__name__, e)
        return 1
    if not summary.finished:
        log.info(
            "stopped after epoch %d of %d (stop_after_epoch); continue with --resume",
            summary.epochs_done, summary.epochs,
        )  # fmt: skip
    summary.timings["time_ray_init_s"] = ray_seconds
    summary.timings.update(process_timings(main_started_at, start))
    sys.stdout.write(summary_json(summary) + "\n")
    return 0


def end_process(code: int) -> None:
    """Ends the process as soon as its outputs are complete. With the embedded Ray this
    process started, the cluster's processes end with it (ray 2.60 starts them fate-shared
    with the driver, or with a reaper where the kernel cannot do that), so it skips Ray's
    graceful teardown at exit (half a second of sleep, then up to a second per process: about
    3 s). Connected to a cluster (``RAY_ADDRESS``), the process exits as usual."""
    ray = sys.modules.get("ray")
    if os.environ.get("RAY_ADDRESS") or ray is None or not ray.is_initialized():
        raise SystemExit(code)
    logging.shutdown()  # flushes the log handlers
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    end_process(main())
