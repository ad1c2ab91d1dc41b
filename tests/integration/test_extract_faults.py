"""Faults the way Ray tests itself: a node removed mid-run (``ray.cluster_utils.Cluster``), and
an S3 store that fails a share of requests (a fault-injecting proxy in front of moto)."""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
import sys
import threading
import time

import pyarrow.parquet as pq
import pytest

from core import storage
from core.corpus import make_corpus
from tests.integration.s3_faults import FaultyS3Proxy

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "extract" / "demo.py")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("faults")
    make_corpus(str(root), 8, 2, seed=11, min_duration=2, max_duration=3,
                resolutions=((128, 96),), fps_choices=(15.0,), workers=1)  # fmt: skip
    return root / "videos"


def _ids(table_uri: str) -> list[str]:
    """The video ids in a table, listed afresh (this process's S3 listings are cached)."""
    fs, _ = storage.filesystem(table_uri)
    fs.invalidate_cache()
    ids = []
    for uri in storage.list_files(table_uri, (".parquet",)):
        table = pq.read_table(io.BytesIO(storage.read_bytes(uri)), columns=["video_id"])
        ids += table.column("video_id").to_pylist()
    return sorted(ids)


def test_a_node_lost_mid_run_leaves_each_video_once(corpus, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from jobs import extract

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    out = tmp_path / "out"
    removed = threading.Event()

    def remove_a_node_after_the_first_commit() -> None:
        markers = out / "_commits"
        deadline = time.time() + 600
        while time.time() < deadline and not (markers.exists() and any(markers.rglob("*.json"))):
            time.sleep(0.05)
        cluster.remove_node(workers[0])
        removed.set()

    threading.Thread(target=remove_a_node_after_the_first_commit, daemon=True).start()
    try:
        code = extract.main([
            "--config", CONFIG, "--input", str(corpus), "--output", str(out), "--cfg-options",
            "extractor.num_actors=2", "extractor.videos_per_call=1", "write_batch_size=1",
            "localizer.batch_size=2",
        ])  # fmt: skip
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert removed.is_set(), "the node was not removed during the run"
    assert code == 0
    expected = sorted(p.stem for p in corpus.glob("*.mp4"))
    assert _ids(str(out / "features")) == expected
    assert len(set(_ids(str(out / "proposals")))) == len(expected)


def _run(endpoint: str, *args: str, attempts: int = 5) -> subprocess.CompletedProcess:
    env = {**os.environ, "AWS_ENDPOINT_URL_S3": endpoint, "AWS_MAX_ATTEMPTS": str(attempts)}
    cmd = [sys.executable, "-m", "jobs.extract", "--config", CONFIG, "--num-cpus", "2", *args,
           "--cfg-options", "extractor.num_actors=1", "write_batch_size=2", "localizer.batch_size=4"]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=900)


def test_s3_faults_lose_nothing_double_nothing_and_persistent_ones_exit_clearly(
    corpus, s3_server, s3_bucket
):
    for path in sorted(corpus.glob("*.mp4")):
        storage.put_file(str(path), f"{s3_bucket}/in/{path.name}")
    expected = sorted(p.stem for p in corpus.glob("*.mp4"))

    with FaultyS3Proxy(s3_server, fault_rate=0.15, max_faults=40, seed=1) as proxy:
        result = _run(proxy.endpoint, "--input", f"{s3_bucket}/in/", "--output", f"{s3_bucket}/o1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert proxy.faults["before"] + proxy.faults["after"] > 0
    assert _ids(f"{s3_bucket}/o1/features") == expected

    stuck = f"/in/{expected[1]}.mp4"  # every request for this video fails
    with FaultyS3Proxy(s3_server, fault_rate=0.0, always_fail=(stuck,)) as proxy:
        result = _run(proxy.endpoint, "--input", f"{s3_bucket}/in/", "--output", f"{s3_bucket}/o2",
                      attempts=2)  # fmt: skip
    assert result.returncode == 75, result.stderr[-3000:]
    assert "left for a later run" in result.stderr
    assert _ids(f"{s3_bucket}/o2/features") == [v for v in expected if v != expected[1]]

    result = _run(s3_server, "--input", f"{s3_bucket}/in/", "--output", f"{s3_bucket}/o2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "7 already done" in result.stdout
    assert _ids(f"{s3_bucket}/o2/features") == expected
