"""Process-level setup shared by the jobs: logging, Ray, run ids, package versions."""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from importlib import metadata

log = logging.getLogger(__name__)

_FORWARDED_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION")
_embedded_gcs: str | None = None  # the GCS address of the Ray that init_ray started


def setup_logging(verbose: bool = False) -> None:
    """Configures the root logger once, in a job's ``main()``."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def new_run_id() -> str:
    """Sortable and unique: ``20261123T201500Z-3f2a9c1d``."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:8]}"


def init_ray(
    num_cpus: int | None = None, num_gpus: int | None = None, setup_hook: str | None = None
) -> None:
    """Connects to the cluster a job was submitted to (``RAY_ADDRESS``, set by
    ``ray job submit``), or starts a local Ray embedded in this process.

    S3 endpoint and region variables are forwarded to the workers, so that an
    ``endpoint_url`` set for this job reaches every task. Credentials are not forwarded:
    workers read them from their own environment or instance profile as usual.
    ``setup_hook``: the embedded Ray's ``worker_process_setup_hook`` (a function's dotted
    name, run first in every worker process).
    """
    import ray

    global _embedded_gcs
    if ray.is_initialized():
        return
    env = {k: os.environ[k] for k in _FORWARDED_ENV if os.environ.get(k)}
    runtime_env = {"env_vars": env} if env else None
    if os.environ.get("RAY_ADDRESS"):
        log.info("connecting to the Ray cluster at %s", os.environ["RAY_ADDRESS"])
        ray.init(runtime_env=runtime_env, log_to_driver=True)
    else:
        log.info("starting an embedded local Ray")
        if setup_hook:
            runtime_env = {**(runtime_env or {}), "worker_process_setup_hook": setup_hook}
        ray.init(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            runtime_env=runtime_env,
            include_dashboard=False,
            configure_logging=False,
        )
        _embedded_gcs = ray.get_runtime_context().gcs_address


def embedded_ray() -> bool:
    """Whether :func:`init_ray` started the Ray this process uses (a local one that ends with
    it, without the dashboard's state API), rather than connecting to a cluster."""
    import ray

    return ray.is_initialized() and ray.get_runtime_context().gcs_address == _embedded_gcs


def package_versions(
    names: tuple[str, ...] = (
        "torch",
        "ray",
        "mmengine",
        "mmcv",
        "mmaction2",
        "numpy",
        "pyarrow",
        "av",
    ),
) -> dict[str, str]:
    """Installed versions of the packages that decide a run's numbers."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def add_video_job_args(parser) -> None:
    """The arguments every job over a video corpus takes, besides ``--config``."""
    parser.add_argument("--input", required=True, help="directory, s3:// prefix, glob or manifest")
    parser.add_argument("--output", required=True, help="output URI")
    parser.add_argument("--num-cpus", type=int, default=None, help="embedded Ray only")


def run_video_job(
    args,
    schema,
    run,
    print_summary,
    exit_code=None,
    input_errors: tuple[type[Exception], ...] = (),
) -> int:
    """The body of a video job's ``main()``: config and inputs, Ray, the run, the summary.

    Args:
        args: parsed arguments (``--config``, ``--cfg-options``, ``--input``, ``--output``,
            ``--num-cpus`` and the job's own).
        schema: the job's config schema.
        run: ``run(cfg, resolved_config_text, videos, run_id) -> summary``.
        print_summary: prints the summary for the user.
        exit_code: ``exit_code(summary, cfg) -> int``; None: 0.
        input_errors: the job's own exceptions that mean unusable input (exit 2).

    Returns:
        0 done; 1 the run failed (what it committed stays, a rerun goes on from it); 2 a
        job-level error at start (config, input, an output holding another config's results).
    """
    from core import config
    from core.io.runs import OutputConflictError
    from core.pipeline.inputs import InputError

    setup_logging()
    try:
        cfg, raw, videos = load_video_job(args, schema)
    except (config.ConfigError, InputError) as e:
        log.error("%s", e)
        return 2
    init_ray(num_cpus=args.num_cpus)
    run_id = new_run_id()
    try:
        summary = run(cfg, raw.pretty_text, videos, run_id)
    except (
        config.ConfigError, OutputConflictError, FileNotFoundError, PermissionError, *input_errors
    ) as e:  # fmt: skip
        log.error("%s", e)
        return 2
    except Exception:  # a model or the storage failed for good
        log.exception("run %s failed; committed videos stay, a rerun goes on from them", run_id)
        return 1
    print_summary(summary)
    return exit_code(summary, cfg) if exit_code else 0


def load_video_job(args, schema):
    """The checked config, its resolved form and the input videos of a video job, before Ray.

    Raises:
        core.config.ConfigError: a bad config or option (the job exits 2).
        core.pipeline.inputs.InputError: the input cannot be listed (exit 2).
    """
    from core import config, storage
    from core.pipeline import inputs

    cfg, raw = config.load(args.config, schema, args.cfg_options)
    storage.set_s3_endpoint(cfg.storage.endpoint_url)
    return cfg, raw, inputs.list_inputs(args.input)
