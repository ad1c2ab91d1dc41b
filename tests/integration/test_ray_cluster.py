"""The jobs under ``ray job submit --working-dir .`` against a local ``ray start --head``."""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import socket
import subprocess
import sys
import time

import duckdb
import pytest

from core.corpus import make_corpus

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_AUTH_ENV: dict[str, str] = {}


def _ray(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """The ``ray`` CLI with the cluster's token (Ray 2.59+ requires one for local clusters)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | _AUTH_ENV
    return subprocess.run(
        [str(BIN / "ray"), *args], capture_output=True, text=True, env=env, **kwargs
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node Ray cluster on loopback; yields the job server's address."""
    temp_dir = tmp_path_factory.mktemp("ray")
    token = temp_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    _AUTH_ENV.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    # every port chosen free: Ray's defaults (e.g. the agent's 52365) may be held by another
    # Ray on this machine, and then job submission finds no agent
    gcs, dashboard, agent_http, agent_grpc, runtime_env, metrics = (_free_port() for _ in range(6))
    started = _ray(
        "start", "--head", "--num-cpus=3", f"--port={gcs}", "--node-ip-address=127.0.0.1",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={agent_http}", f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}",
        f"--temp-dir={temp_dir}", "--disable-usage-stats", timeout=180,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        yield f"http://127.0.0.1:{dashboard}"
    finally:
        # only this cluster's processes (all carry its temp dir); `ray stop` would also end
        # every other Ray on the machine
        for sig in ("TERM", "KILL"):
            subprocess.run(["pkill", f"-{sig}", "-f", str(temp_dir)], check=False)
            time.sleep(3)
        _AUTH_ENV.clear()


def submit(address: str, *entrypoint: str) -> subprocess.CompletedProcess:
    """``ray job submit``; retried while the new head's job agent is still starting."""
    for _ in range(36):
        result = _ray(
            "job", "submit", f"--address={address}", "--working-dir", ".", "--",
            sys.executable, "-m", *entrypoint, cwd=REPO, timeout=900,
        )  # fmt: skip
        if "No available agent to submit job" not in result.stderr:
            return result
        time.sleep(5)
    return result


def test_extract_runs_unchanged_on_a_cluster(cluster, tmp_path):
    make_corpus(str(tmp_path / "corpus"), 2, 4, seed=5, min_duration=2, max_duration=3,
                resolutions=((160, 120),), fps_choices=(15.0,), workers=1)  # fmt: skip
    out = tmp_path / "out"
    result = submit(
        cluster, "jobs.extract", "--config", "configs/extract/demo.py",
        "--input", str(tmp_path / "corpus" / "videos"), "--output", str(out),
        "--cfg-options", "extractor.num_actors=1",
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "succeeded" in result.stdout
    assert "2 ok (0 damaged), 0 failed" in result.stdout
    rows = duckdb.sql(
        f"SELECT count(DISTINCT video_id) FROM read_parquet('{out}/proposals/**/*.parquet', "
        "hive_partitioning=true)"
    ).fetchall()
    assert rows == [(2,)]


def test_train_runs_unchanged_on_a_cluster(cluster, tmp_path):
    from core.train import synthetic_features as synthetic

    C = T = 16
    annotations = synthetic.write_synthetic(str(tmp_path / "feats"), 32, C, T, num_classes=3)
    out = tmp_path / "run"
    tiny = [
        f"model.feat_dim={C}", f"model.temporal_dim={T}", "model.post_process_top_k=16",
        "model.hidden_dim_1d=32", "model.hidden_dim_2d=16", "model.hidden_dim_3d=32",
        "epochs=2", "optim.milestones=[1]",
    ]  # fmt: skip
    result = submit(
        cluster, "jobs.train", "--config", "configs/train/demo.py",
        "--features", str(tmp_path / "feats"), "--annotations", annotations,
        "--output", str(out), "--num-workers", "2", "--cfg-options", *tiny,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "succeeded" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["AR@100"] <= 1.0 and "mAP" in metrics
    assert (out / "best.pth").exists()
