"""The extract job's feature pool: its layout, the NVDEC slots, the per-stage seconds."""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys
import uuid

import numpy as np
import pytest

from core import config
from core.config import ConfigError
from core.pipeline import columns as col
from core.pipeline import driver, pools
from core.pipeline.config import ExtractConfig

REPO = pathlib.Path(__file__).resolve().parents[2]


def _cfg(path: str = "configs/extract/tsn_r50_400x100.py", **options) -> ExtractConfig:
    cfg, _ = config.load(str(REPO / path), ExtractConfig, options or None)
    return cfg


def test_one_pool_reserves_the_average_of_its_cpu_and_nvdec_actors():
    cfg = _cfg()
    n_cpu, n_nvdec = cfg.extractor.num_actors, cfg.pipeline.nvdec_actors_per_node
    pool = pools.layout(cfg, gpu_nodes=1)
    assert pool.size == n_cpu + n_nvdec
    assert pool.num_cpus * pool.size == pytest.approx(n_cpu + 0.25 * n_nvdec, abs=1e-3)
    # the production layout fits one 16-core node with one GPU, write tasks included
    assert pool.num_cpus * pool.size + cfg.pipeline.write_num_cpus <= 16
    assert pool.num_gpus * pool.size + cfg.localizer.num_gpus <= 1
    two = pools.layout(cfg, gpu_nodes=2)
    assert two.size == n_cpu + 2 * n_nvdec and two.nvdec_per_node == n_nvdec
    cpu_only = pools.layout(_cfg(**{"pipeline.nvdec_actors_per_node": 0}), gpu_nodes=0)
    assert (cpu_only.size, cpu_only.num_cpus) == (n_cpu, 1.0)


def test_nvdec_actors_need_a_gpu():
    with pytest.raises(ConfigError, match="no GPU node"):
        pools.layout(_cfg(), gpu_nodes=0)
    with pytest.raises(ConfigError, match="extractor.num_gpus"):
        pools.layout(_cfg(**{"extractor.num_gpus": 0.0}), gpu_nodes=1)
    with pytest.raises(ConfigError, match="nvdec_num_cpus"):
        _cfg(**{"pipeline.nvdec_num_cpus": 2.0})


def test_a_node_hands_out_its_nvdec_slots_once_and_frees_a_dead_holders(tmp_path):
    folder = f"test-{uuid.uuid4().hex}"
    first, second = pools._take_slot(folder, 2), pools._take_slot(folder, 2)
    assert first is not None and second is not None
    assert pools._take_slot(folder, 2) is None  # two slots: a third actor decodes on the CPU
    # a holder that dies: its process exit closes the file, which frees the lock
    code = f"from core.pipeline import pools; assert pools._take_slot({folder!r}, 2)"
    first.close()
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
    replacement = pools._take_slot(folder, 2)
    assert replacement is not None and pools._take_slot(folder, 2) is None
    second.close()
    replacement.close()


def test_busy_seconds_sum_the_stages_and_decode_excludes_the_recognizer():
    counts = driver._Counts()
    summary = {
        "video_id": np.asarray(["a", "b"], dtype=object),
        col.OK: np.asarray([True, True]),
        col.COMMITTED: np.asarray([True, True]),
        col.NUM_DECODE_ERRORS: np.zeros(2, np.int32),
        col.NUM_PROPOSALS: np.ones(2, np.int32),
        col.ERROR_STAGE: np.asarray(["", ""], dtype=object),
        col.DECODER: np.asarray(["cpu", "nvdec"], dtype=object),
        col.SECONDS_FEATURES: np.asarray([2.0, 3.0]),
        col.SECONDS_RECOGNIZER: np.asarray([0.5, 0.5]),
        col.SECONDS_LOCALIZER: np.asarray([0.1, 0.1]),
        col.SECONDS_WRITE: np.asarray([0.2, 0.2]),
        col.ACTOR_START_SECONDS: np.asarray([4.0, 0.0]),
    }
    counts.add(summary)
    counts.add(summary | {col.COMMITTED: np.asarray([False, False])})  # another run's: busy too
    assert counts.busy_seconds() == {"decode": 8.0, "recognizer": 2.0, "localizer": 0.4,
                                     "write": 0.8, "features_cpu": 4.0,
                                     "features_nvdec": 6.0}  # fmt: skip
    assert counts.by_decoder == {"cpu": 1, "nvdec": 1}
    assert counts.actor_starts()["actors"] == 2 and counts.actor_starts()["max"] == 4.0


def test_the_decoder_does_not_change_the_fingerprint():
    a = _cfg()
    b = dataclasses.replace(a, sampling=dataclasses.replace(a.sampling, decoder="cpu"))
    assert driver.fingerprint(a, "random", ["x"]) == driver.fingerprint(b, "random", ["x"])


def test_calls_per_actor_must_fit_the_calls_in_flight():
    assert _cfg().pipeline.calls_per_actor == 4  # the production layout runs four at once
    assert _cfg("configs/extract/demo.py").pipeline.calls_per_actor == 1
    with pytest.raises(ConfigError, match="calls_per_actor"):
        _cfg(**{"pipeline.calls_per_actor": 0})
    with pytest.raises(
        ConfigError, match=r"tasks_in_flight_per_actor \(2\).*calls_per_actor \(3\)"
    ):
        _cfg(**{"pipeline.calls_per_actor": 3, "pipeline.tasks_in_flight_per_actor": 2})


def test_a_lowered_thread_leaves_the_other_threads_as_they_were():
    import os
    import threading

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen = {}

    def call():
        tid = threading.get_native_id()
        pools._lower_thread(mine + 3)
        pools._lower_thread(mine + 3)  # once is enough: the second call changes nothing
        seen["call"] = os.getpriority(os.PRIO_PROCESS, tid)

    worker = threading.Thread(target=call)
    worker.start()
    worker.join()
    assert seen["call"] == mine + 3
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


@pytest.fixture(scope="module")
def two_videos(tmp_path_factory):
    from tests.integration import videos

    folder = tmp_path_factory.mktemp("pool-videos")
    return [videos.make_video(folder / f"v{i}.mp4", 96, 64, fps=10, seconds=1 + i) for i in (0, 1)]


def test_calls_running_at_once_each_hold_a_decoder_and_count_their_own_recognizer_time(
    two_videos, monkeypatch
):
    import threading

    from core.io import tables
    from core.pipeline import stages

    cfg = _cfg("configs/extract/demo.py")
    stage = stages.SnippetFeatures(cfg)
    batches = [
        {
            tables.VIDEO_ID: np.asarray([f"v{i}"], dtype=object),
            tables.URI: np.asarray([p], dtype=object),
        }
        for i, p in enumerate(two_videos)
    ]
    alone = [stage(dict(b)) for b in batches]  # one call after the other: one decoder
    assert stage.num_decoders == 1

    both_decoding = threading.Barrier(2, timeout=60)
    held = []
    real = stages._snippets

    def snippets(decoder, source):
        held.append(decoder)
        both_decoding.wait()  # neither call goes on before the other holds a decoder too
        yield from real(decoder, source)

    monkeypatch.setattr(stages, "_snippets", snippets)
    outs, seconds = {}, {}

    def call(i):
        before = stages.recognizer_clock.seconds
        outs[i] = stage(dict(batches[i]))
        seconds[i] = stages.recognizer_clock.seconds - before

    main_clock = stages.recognizer_clock.seconds
    threads = [threading.Thread(target=call, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(d) for d in held}) == 2 and stage.num_decoders == 2
    assert all(d.kind == stage.kind == "cpu" for d in held)
    assert all(seconds[i] > 0 for i in (0, 1))
    assert stages.recognizer_clock.seconds == main_clock  # the calls' threads, not this one
    for i in (0, 1):  # the same rows as one call at a time
        assert list(outs[i][col.NUM_SNIPPETS]) == list(alone[i][col.NUM_SNIPPETS])
        np.testing.assert_allclose(outs[i][col.FEATS], alone[i][col.FEATS], rtol=1e-5, atol=1e-6)


def test_cuda_waits_sleep_through_the_primary_contexts_blocking_sync_flag(monkeypatch):
    import ctypes

    calls = []

    class FakeDriver:
        def cuInit(self, flags):
            calls.append(("init", flags))
            return 0

        def cuDeviceGet(self, device, ordinal):
            calls.append(("get", ordinal))
            return 0

        def cuDevicePrimaryCtxSetFlags(self, device, flags):
            calls.append(("flags", flags))
            return self.result

    driver = FakeDriver()
    driver.result = 0
    monkeypatch.setattr(ctypes, "CDLL", lambda name: driver)
    assert pools.sleep_on_cuda_waits(1) is True
    assert calls == [("init", 0), ("get", 1), ("flags", 0x04)]
    driver.result = 708  # CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE: too late for this process
    assert pools.sleep_on_cuda_waits() is False

    def missing(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert pools.sleep_on_cuda_waits() is False
    assert _cfg().pipeline.cuda_blocking_sync is True  # the production configs sleep
    assert _cfg("configs/extract/demo.py").pipeline.cuda_blocking_sync is False
