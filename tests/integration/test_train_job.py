"""jobs.train on real Ray Train: 2 workers (DDP over gloo), real Parquet, checkpoints, resume.

One embedded Ray for the module; the jobs run in this process (``jobs.train.main``). The
features encode their ground truth (core.train.synthetic_features), so a few epochs learn something.
The resume test writes to S3 (moto on loopback), kills a worker after epoch 2, continues with
``--resume``, and must end with the uninterrupted run's weights and metrics, bit for bit.
"""

from __future__ import annotations

import functools
import json
import pathlib
import sys

import pytest
import torch

from core import config, storage
from core.io.checkpoint import load_checkpoint
from core.models.localizer import load_localizer
from core.train import TrainConfig, synthetic_features
from core.train.trainer import run_training
from jobs import train as train_job

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "train" / "demo.py")
C, T = 16, 16
TINY = [
    f"model.feat_dim={C}", f"model.temporal_dim={T}", "model.post_process_top_k=16",
    "model.hidden_dim_1d=32", "model.hidden_dim_2d=16", "model.hidden_dim_3d=32",
    "epochs=3", "optim.milestones=[2]",
]  # fmt: skip
METRIC_KEYS = ("AR@1", "AR@5", "AR@10", "AR@100", "AUC", "mAP", "mAP@0.5", "mAP@0.75", "mAP@0.95")


@pytest.fixture(scope="module")
def ray_session(s3_server):
    """Ray started after the S3 stand-in, so that its workers inherit the endpoint."""
    import ray

    ray.init(num_cpus=3, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> tuple[str, str]:
    out = str(tmp_path_factory.mktemp("train_features"))
    annotations = synthetic_features.write_synthetic(out, 48, C, T, num_classes=3, rows_per_file=16)
    return out, annotations


def train_args(features, output, *extra, options=()) -> list[str]:
    feats, annos = features
    return ["--config", CONFIG, "--features", feats, "--annotations", annos, "--output", output,
            "--num-workers", "2", *extra, "--cfg-options", *TINY, *options]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(ray_session, features, tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("run") / "uninterrupted"
    assert train_job.main(train_args(features, str(out))) == 0
    return out


def test_two_workers_write_every_output(uninterrupted):
    out = uninterrupted
    for name in ("best.pth", "metrics.json", "ar_an.png", "training_curves.png", "config.py",
                 "history.json", "checkpoints/checkpoint_manager_snapshot.json"):  # fmt: skip
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(0 <= metrics[k] <= (100 if k == "AUC" else 1) for k in METRIC_KEYS)
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["lr"] == pytest.approx(2e-4)  # the step after epoch 2
    assert history[-1]["loss"] < history[0]["loss"]
    # the final task evaluates best.pth on the validation videos as rank 0 did per epoch
    best = max(history, key=lambda h: (h["mAP"], -h["epoch"]))  # demo.py's checkpoint.score
    assert metrics["mAP"] == pytest.approx(best["mAP"], abs=1e-9)
    assert metrics["AUC"] == pytest.approx(best["AUC"], abs=1e-9)
    assert metrics["num_videos"] == 12
    obj, _ = load_checkpoint(str(out / "best.pth"))
    assert obj["meta"]["epoch"] == best["epoch"]
    assert obj["meta"]["class_names"] == ["action_0", "action_1", "action_2"]
    localizer = load_localizer({}, str(out / "best.pth"))
    assert localizer.model.num_action_classes == 3


def crash_after_report(epoch: int, loop_config: dict) -> None:
    """The real worker loop, except that rank 0 dies right after reporting ``epoch``."""
    from core.train import loop

    report = loop._report

    def report_then_crash(state, metrics, rank):
        report(state, metrics, rank)
        if rank == 0 and metrics["epoch"] == epoch:
            raise RuntimeError("injected worker failure")

    loop._report = report_then_crash
    loop.train_loop_per_worker(loop_config)


def test_crashed_run_resumes_to_the_uninterrupted_result(uninterrupted, features, s3_server):
    """On S3 (moto): a run whose worker dies after epoch 2 (no retries left) keeps its
    checkpoints; ``--resume`` finishes it with the uninterrupted run's weights and metrics.
    (With ``max_failures`` > 0 Ray Train restarts the workers from the same checkpoint, within
    the run, through the same ``ray.train.get_checkpoint()`` path.)"""
    import boto3
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="train-resume")
    out = "s3://train-resume/run"
    args = train_job.parse_args(train_args(features, out, options=["max_failures=0"]))
    cfg, raw = config.load(CONFIG, TrainConfig, train_job.cli_overrides(args))
    with pytest.raises(Exception, match="injected worker failure"):
        run_training(cfg, raw, *features, out, train_loop=functools.partial(crash_after_report, 2))
    assert not storage.exists(f"{out}/best.pth")

    assert train_job.main(train_args(features, out, "--resume")) == 0
    timing = {"train_seconds", "val_seconds", "val_wait_seconds", "val_predict_seconds",
              "val_evaluate_seconds", "samples_per_s"}  # fmt: skip
    first = json.loads((uninterrupted / "history.json").read_text())
    again = storage.read_json(f"{out}/history.json")
    assert [{k: v for k, v in h.items() if k not in timing} for h in again] == [
        {k: v for k, v in h.items() if k not in timing} for h in first
    ]
    a, _ = load_checkpoint(str(uninterrupted / "best.pth"))
    b, _ = load_checkpoint(f"{out}/best.pth")
    assert a["meta"]["epoch"] == b["meta"]["epoch"]
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    ma = json.loads((uninterrupted / "metrics.json").read_text())
    mb = storage.read_json(f"{out}/metrics.json")
    assert {k: ma[k] for k in METRIC_KEYS} == {k: mb[k] for k in METRIC_KEYS}


def test_refusals_exit_2_before_training(uninterrupted, features, tmp_path):
    def rc(output, *extra, options=()) -> int:
        return train_job.main(train_args(features, str(output), *extra, options=options))

    # an output that holds a run needs --resume; a resume must not change the recipe
    assert rc(uninterrupted) == 2
    assert rc(uninterrupted, "--resume", options=["optim.lr=0.1"]) == 2
    # the global batch must split evenly; the model must fit the features
    assert rc(tmp_path / "a", options=["batch_size=7"]) == 2
    assert rc(tmp_path / "b", options=["model.feat_dim=400"]) == 2
    assert not (tmp_path / "a").exists()


def test_the_command_line_job_ends_with_its_outputs_complete(features, tmp_path):
    """``python -m jobs.train`` with its own embedded Ray ends its process right after the
    summary (:func:`jobs.train.end_process`, no graceful Ray teardown): exit code 0 and
    every output in place."""
    import os
    import subprocess

    out = tmp_path / "cli"
    args = train_args(features, str(out), options=["epochs=1", "scaling.num_workers=1"])
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.train", *args, "--num-workers", "1", "--num-cpus", "2"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert '"output_uri"' in stdout
    # the embedded Ray's run starts no actor that polls what it cannot reach
    assert "State API may be temporarily unavailable" not in stderr
    assert "PlacementGroupCleaner" not in stderr and "PreemptionWatcher" not in stderr
    for name in ("best.pth", "metrics.json", "history.json", "ar_an.png", "training_curves.png"):
        assert (out / name).exists(), name
    assert set(json.loads((out / "metrics.json").read_text())) >= set(METRIC_KEYS)
