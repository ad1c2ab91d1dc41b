"""jobs.detect end to end: real Ray, real Parquet, a real video, synthetic and broken ones.

Each case runs the job as a user would (``python -m jobs.detect`` in a subprocess, embedded
Ray) with the demo config (tiny random models) and a detector threshold of 0, so that random
weights still yield persons and actions to write.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import av
import duckdb
import pyarrow.parquet as pq
import pytest

from core.detect.schema import DETECTIONS_SCHEMA
from tests.integration import videos

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "detect" / "demo.py")
OPTIONS = ["detector.score_thr=0.0", "detector.max_persons=4", "action.score_thr=0.4"]


def run_job(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "jobs.detect", "--config", CONFIG, "--num-cpus", "2", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def query(sql: str) -> list[tuple]:
    return duckdb.sql(sql).fetchall()


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> tuple[pathlib.Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("detect_videos")
    folder = root / "videos"
    folder.mkdir()
    real = videos.require_real_videos()
    shutil.copy(real / "carphone_pristine.mp4", folder / "carphone_pristine.mp4")
    videos.make_video(folder / "pattern.mp4", 160, 120, fps=25, seconds=2)
    videos.make_video(folder / "too_short.mp4", 160, 120, fps=25, seconds=0.4)  # < one window
    reasons = videos.add_broken_videos(
        root, folder, ("truncated_half.mp4", "text.mp4", "unknown_codec.mp4")
    )
    return folder, reasons


def test_detect_then_rerun_adds_nothing(video_dir, tmp_path):
    folder, reasons = video_dir
    out = tmp_path / "out"
    first = run_job("--input", str(folder), "--output", str(out), "--cfg-options", *OPTIONS,
                    "render.max_videos=0", "render.video_ids=[carphone_pristine]")  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    dets = f"read_parquet('{out}/detections/*.parquet')"
    errs = f"read_parquet('{out}/errors/*.parquet')"
    schema = pq.read_schema(next((out / "detections").glob("*.parquet")))
    assert schema.remove_metadata().equals(DETECTIONS_SCHEMA)
    per_video = dict(query(f"SELECT video_id, count(*) FROM {dets} GROUP BY video_id"))
    assert set(per_video) == {"carphone_pristine", "pattern"}  # too_short: no keyframe, no rows
    (bad,) = query(f"SELECT count(*) FROM {dets} WHERE NOT (0 <= x1 AND x1 <= x2 AND x2 <= 1 "
                   "AND 0 <= y1 AND y1 <= y2 AND y2 <= 1 AND score > 0.4)")[0]  # fmt: skip
    assert bad == 0
    ids = {r[0] for r in query(f"SELECT DISTINCT action_id FROM {dets}")}
    assert ids and max(ids) <= 80 and min(ids) >= 1
    # the demo's keyframes: 0-based 7, 15, ... (window 16, step 8) at frame / fps seconds
    keys = query(f"SELECT DISTINCT frame_index, timestamp FROM {dets} WHERE video_id = 'pattern' "
                 "ORDER BY 1")  # fmt: skip
    assert [k for k, _ in keys] == [7, 15, 23, 31, 39]
    assert [round(ts, 6) for _, ts in keys] == [k / 25 for k, _ in keys]
    errors = dict(query(f"SELECT video_id, error_type FROM {errs}"))
    assert errors == reasons
    render = out / "renders" / "carphone_pristine.mp4"
    with av.open(str(render)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) > 20
    rows = query(f"SELECT count(*) FROM {dets}")[0][0]

    again = run_job("--input", str(folder), "--output", str(out), "--cfg-options", *OPTIONS)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "6 videos in input, 6 already done" in again.stdout
    assert query(f"SELECT count(*) FROM {dets}") == [(rows,)]
    assert query(f"SELECT count(*) FROM {errs}") == [(len(reasons),)]


def test_killed_run_resumes_without_duplicates(video_dir, tmp_path):
    folder, reasons = video_dir
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "jobs.detect", "--config", CONFIG, "--num-cpus", "2",
           "--input", str(folder), "--output", str(out), "--cfg-options", *OPTIONS,
           "write_batch_size=1"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    commits_dir = out / "_commits"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if commits_dir.exists() and len(list(commits_dir.rglob("*.json"))) >= 1:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    total = len(list(folder.iterdir()))
    committed = len(list(commits_dir.rglob("*.json")))
    assert 1 <= committed < total, "the run should have been killed mid-way"

    resumed = run_job("--input", str(folder), "--output", str(out), "--cfg-options", *OPTIONS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = int(resumed.stdout.split(" already done")[0].rsplit(" ", 1)[1])
    assert committed <= done <= total  # batches staged when killed are finished, not redone
    dets = f"read_parquet('{out}/detections/*.parquet')"
    errs = f"read_parquet('{out}/errors/*.parquet')"
    dupes = query(f"SELECT video_id, frame_index, person_index, action_id, count(*) c FROM {dets} "
                  "GROUP BY ALL HAVING c > 1")  # fmt: skip
    assert dupes == []
    assert {r[0] for r in query(f"SELECT DISTINCT video_id FROM {dets}")} == {
        "carphone_pristine",
        "pattern",
    }
    assert query(f"SELECT count(*), count(DISTINCT video_id) FROM {errs}") == [(len(reasons),) * 2]


def test_bad_config_exits_2(tmp_path):
    bad = run_job("--input", str(tmp_path), "--output", str(tmp_path / "o"),
                  "--cfg-options", "detector.no_such_key=1")  # fmt: skip
    assert bad.returncode == 2
    assert "detector.no_such_key" in bad.stderr
