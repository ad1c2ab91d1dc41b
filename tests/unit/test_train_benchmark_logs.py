"""benchmarks/train.py's reading of Ray's session logs: when each part of Ray's start happened."""

from __future__ import annotations

import datetime as dt
import os
import time

from benchmarks import train as bench


def _stamp(t: float, bracket: bool) -> str:
    text = dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S,%f")[:23]
    return f"[{text} I 1 1] (raylet)" if bracket else f"{text}\tINFO head.py:1 --"


def test_ray_start_timeline_reads_the_newest_session_since_the_job_started(tmp_path):
    since = float(int(time.time()) - 10)  # whole seconds: log stamps keep milliseconds only
    old = tmp_path / "session_2026-01-01_00-00-00_1" / "logs"
    new = tmp_path / "session_2026-12-07_10-00-00_2" / "logs"
    for logs in (old, new):
        logs.mkdir(parents=True)
    (old / "raylet.out").write_text(_stamp(since - 100, True) + " old\n")
    os.utime(old.parent, (since - 100, since - 100))
    (new / "gcs_server.out").write_text(_stamp(since + 1.5, True) + " metadata\n")
    (new / "raylet.out").write_text(
        _stamp(since + 2.0, True) + " main.cc: cluster ID\n"
        + _stamp(since + 3.25, True) + " Raylet of id x started. Raylet consists of node_manager\n"
    )  # fmt: skip
    (new / "dashboard.log").write_text(
        "no stamp on this line\n" + _stamp(since + 1.75, False) + " Usage reporting is disabled.\n"
    )  # fmt: skip
    timeline = bench.ray_start_timeline(since, ray_temp=str(tmp_path))
    assert timeline["gcs_server"] == 1.5 and timeline["raylet"] == 2.0
    assert timeline["raylet_ready"] == 3.25
    assert timeline["dashboard_head"] == timeline["dashboard_head_ready"] == 1.75
    assert "dashboard_agent" not in timeline  # no such file: left out, not guessed
    assert bench.ray_start_timeline(time.time() + 60, ray_temp=str(tmp_path)) == {}
