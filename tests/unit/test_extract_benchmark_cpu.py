"""benchmarks/extract.py's CPU accounting: processes by role from /proc, cores over a window."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks import extract as bench


@pytest.mark.parametrize(
    ("title", "role"),
    [
        ("ray::MapWorker(MapBatches(LabelledProposals))", "LabelledProposals"),
        ("ray::MapBatches(write_batch)", "write_batch"),
        ("ray::_StatsActor.update_metrics", "_StatsActor"),
        ("ray::IDLE", "idle"),
        ("ray::DashboardAgent", "ray_system"),
        ("/usr/bin/python -u /x/ray/_private/log_monitor.py --session-dir=/tmp/ray", "ray_system"),
        ("/x/ray/core/src/ray/raylet/raylet\0--node_ip_address=1", "ray_system"),
        ("bash\0-c\0sleep 1", None),
    ],
)
def test_roles_from_process_titles(title, role):
    assert bench.ProcessCpu()._role(12345, os.getpid(), title) == role


def test_a_feature_actor_is_split_by_its_decoder(tmp_path, monkeypatch):
    cpu = bench.ProcessCpu()
    title = "ray::MapWorker(MapBatches(FeatureActor)).submit"
    assert cpu._role(os.getpid() + 10**7, os.getpid(), title) == "FeatureActor[cpu]"  # no maps
    cpu.nvdec.add(42)
    assert cpu._role(42, os.getpid(), title) == "FeatureActor[nvdec]"


def test_samples_count_a_busy_child_and_the_machine():
    cpu = bench.ProcessCpu()
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass"
    proc = subprocess.Popen([sys.executable, "-c", spin])
    try:
        first, machine0 = cpu.sample()
        proc.wait(timeout=30)
        time.sleep(0.05)
        by_role, machine = cpu.sample()
    finally:
        proc.kill()
    assert set(first) <= {"driver", "driver_children"} | set(by_role)
    assert by_role["driver_children"] >= 0.4  # the child's CPU, counted once it was waited for
    assert machine - machine0 >= 0.4


def test_cores_over_the_window_and_per_video():
    samples = [
        (0.0, {"FeatureActor[cpu]": 0.0, "driver": 1.0}, 0.0),
        (10.0, {"FeatureActor[cpu]": 20.0, "FeatureActor[nvdec]": 5.0, "driver": 2.0}, 30.0),
        (20.0, {"FeatureActor[cpu]": 50.0, "FeatureActor[nvdec]": 15.0, "driver": 3.0}, 70.0),
    ]
    out = bench.cpu_summary(samples, window=(5.0, 15.0))
    assert out["whole_job"]["machine_busy_cores"] == 3.5
    assert out["whole_job"]["cores_by_role"] == {
        "FeatureActor[cpu]": 2.5, "FeatureActor[nvdec]": 0.75, "driver": 0.1,
    }  # fmt: skip
    assert "steady" not in out  # one sample inside the window: no rate
    out = bench.cpu_summary(samples, window=(10.0, 20.0))
    assert out["steady"]["cores_by_role"]["FeatureActor[cpu]"] == 3.0
    rates = {"cpu": 6.0, "nvdec": 4.0}
    per_video = bench.per_video_cpu(out["steady"]["cores_by_role"], rates)
    assert per_video == {"cpu": 0.5, "nvdec": 0.25}


def test_maps_are_read_seldom_and_only_while_an_actor_is_young(monkeypatch):
    """Reading a process's maps holds its memory-map lock: at most every 5 s, for 90 s."""
    cpu = bench.ProcessCpu()
    clock, reads, maps = [100.0], [], {42: "7f00 r-xp /usr/lib/libc.so.6\n"}
    monkeypatch.setattr(bench.time, "monotonic", lambda: clock[0])
    real = pathlib.Path.read_text

    def read_text(self, *args, **kwargs):
        if self.name != "maps":
            return real(self, *args, **kwargs)
        pid = int(self.parent.name)
        reads.append(pid)
        return maps[pid]

    monkeypatch.setattr(pathlib.Path, "read_text", read_text)
    for _ in range(400):  # 200 s of samples, one each 0.5 s
        assert not cpu._has_nvdec(42)
        clock[0] += 0.5
    assert reads == [42] * 19  # at 0, 5, ..., 90 s
    maps[7] = "7f00 r-xp /usr/lib/x86_64-linux-gnu/libnvcuvid.so.1\n"
    assert cpu._has_nvdec(7) and cpu._has_nvdec(7)
    assert reads.count(7) == 1  # known for good once seen


def test_steady_rate_leaves_out_the_ramp_and_the_tail():
    # 2 s of ramp, then a video every 0.1 s, then a 5 s tail: the window sees the 10/s
    done_s = [2.0 + 0.1 * i for i in range(100)]
    done_s[-3:] = [20.0, 22.0, 25.0]
    steady = bench.steady_rate(np.asarray(done_s))
    assert (steady["from_s"], steady["to_s"]) == pytest.approx((3.0, 10.9))
    assert steady["videos_per_s"] == pytest.approx(80 / 7.9)  # the jobs' rule: 80 done inside
    assert 2.0 < steady["from_s"] < steady["to_s"] < 20.0
    assert bench.steady_rate(np.arange(9.0)) is None  # too few for a window
    assert bench.steady_rate(np.zeros(20)) is None  # no time between its ends


def test_bound_rate_prefers_the_steady_window():
    assert bench.bound_rate({"videos_per_s": 8.0, "steady": {"videos_per_s": 10.0}}) == 10.0
    assert bench.bound_rate({"videos_per_s": 8.0, "steady": None}) == 8.0
    assert bench.bound_rate({"videos_per_s": 8.0}) == 8.0  # a results file from before


def test_cpu_decode_bound_over_real_videos(tmp_path):
    from tests.integration import videos

    paths = [videos.make_video(tmp_path / f"{i}.mp4", 160, 120, 25, 1 + i % 3) for i in range(4)]
    sampling = {"clip_len": 1, "clip_interval": 8, "short_side": 64, "crop_size": 64}
    bound = bench.decode_bound(paths * 3, sampling, 2, "cpu")
    assert bound["videos"] == 12 and bound["decoder"] == "cpu"
    assert bound["video_seconds"] == pytest.approx(3 * (1 + 2 + 3 + 1), rel=0.01)
    assert bound["steady"]["videos_per_s"] > 0 and bound["videos_per_s"] > 0


def test_a_jobs_steady_state_shares_the_bounds_window():
    features = [(0.1 * i, "cpu" if i % 2 else "nvdec") for i in range(50)]
    steady, window = bench.steady_state(features, np.array([0.0, 5.0]), np.array([0, 50]))
    assert window == bench.steady_window([f for f, _ in features]) == pytest.approx((0.5, 4.4))
    assert steady["videos_per_s"] == pytest.approx(40 / 3.9)
    assert steady["videos_per_s_by_decoder"] == pytest.approx({"cpu": 20 / 3.9, "nvdec": 20 / 3.9})
    assert steady["commits_per_s_same_window"] == pytest.approx(10.0)
