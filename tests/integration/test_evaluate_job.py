"""``python -m jobs.evaluate`` on a real hive-partitioned Parquet dataset, local and on S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import storage
from core.eval import metrics as M
from core.io.tables import PROPOSALS_SCHEMA

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABELS = ["Archery", "Bowling", "Zumba"]


def make_inputs(seed: int = 0, num_videos: int = 12) -> tuple[dict, pa.Table]:
    """Official ActivityNet annotations (ids without ``v_``) and a proposals table (ids with
    ``v_``, as MMAction2-style pipelines name videos)."""
    rng = np.random.default_rng(seed)
    database, rows = {}, []
    for i in range(num_videos):
        video_id, duration = f"vid{i:03d}", 60.0
        n = int(rng.integers(1, 4))
        start = rng.uniform(0, 40, n)
        segments = np.stack([start, start + rng.uniform(2, 20, n)], 1)
        labels = [LABELS[int(c)] for c in rng.integers(0, len(LABELS), n)]
        database[video_id] = {
            "subset": "validation" if i % 4 else "training",
            "duration": duration,
            "annotations": [
                {"segment": [float(s), float(e)], "label": label}
                for (s, e), label in zip(segments, labels, strict=True)
            ],
        }
        if i == 5:
            continue  # a listed video without proposals
        m = int(rng.integers(5, 30))
        near = segments[rng.integers(0, n, m)] + rng.normal(0, 2, (m, 2))
        proposal_segments = np.clip(np.sort(near, axis=1), 0, duration)
        scores = rng.random(m).astype(np.float32)
        for rank, k in enumerate(np.argsort(-scores)):
            label_id = int(rng.integers(0, len(LABELS)))
            rows.append(
                {
                    "video_id": f"v_{video_id}",
                    "t_start": float(proposal_segments[k, 0]),
                    "t_end": float(proposal_segments[k, 1]) + 0.1,
                    "score": float(scores[k]),
                    "label": LABELS[label_id],
                    "label_id": label_id,
                    "label_score": float(scores[k] * rng.random()),
                    "rank": rank,
                    "video_duration_s": duration,
                    "uri": f"videos/v_{video_id}.mp4",
                    "run_id": "run-1",
                    "model": "random",
                }
            )
    annotations = {"version": "VERSION 1.3", "classes": LABELS, "database": database}
    return annotations, pa.Table.from_pylist(rows, schema=PROPOSALS_SCHEMA)


def write_hive(table: pa.Table, root: str, filesystem=None) -> None:
    """Nested hive partitions ``run_id=.../shard=k/part-0.parquet`` plus files a reader must
    skip."""
    for shard, start in enumerate(range(0, table.num_rows, 100)):
        folder = f"{root}/run_id=run-1/shard={shard}"
        if filesystem is None:
            os.makedirs(folder, exist_ok=True)
        else:
            filesystem.create_dir(folder)
        pq.write_table(table.slice(start, 100), f"{folder}/part-0.parquet", filesystem=filesystem)
    if filesystem is None:
        open(f"{root}/_SUCCESS", "w").close()
        with open(f"{root}/notes.txt", "w") as f:
            f.write("not parquet")


def run_job(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jobs.evaluate", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def check_metrics(metrics: dict, expected: dict) -> None:
    keys = ["AR@1", "AR@5", "AR@10", "AR@100", "AUC", "mAP", "mAP@0.5", "mAP@0.75", "mAP@0.95"]
    for key in keys:
        assert metrics[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-12), key
    for key in keys[:4] + keys[5:]:
        assert 0.0 <= metrics[key] <= 1.0
    assert 0.0 <= metrics["AUC"] <= 100.0
    assert metrics["num_videos"] == expected["num_videos"]
    assert metrics["num_proposals"] == expected["num_proposals"]


@pytest.mark.integration
def test_evaluate_job_local(tmp_path):
    annotations, table = make_inputs()
    storage.write_json(str(tmp_path / "anet.json"), annotations)
    write_hive(table, str(tmp_path / "proposals"))
    out = tmp_path / "eval"
    done = run_job(
        "--proposals",
        str(tmp_path / "proposals"),
        "--annotations",
        str(tmp_path / "anet.json"),
        "--output",
        str(out),
        "--subset",
        "validation",
    )
    assert done.returncode == 0, done.stderr
    assert "AR@100" in done.stdout and "mAP@0.5" in done.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    expected = M.evaluate(table, str(tmp_path / "anet.json"), subset="validation")
    check_metrics(metrics, expected)
    assert metrics["num_videos"] == 9  # videos 1, 2, 3, 5, 6, 7, 9, 10, 11
    assert metrics["num_videos_with_proposals"] == 8  # video 5 has none
    assert metrics["AR@100"] > 0.3 and metrics["mAP@0.5"] > 0.0
    assert (out / "ar_an.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.integration
def test_evaluate_job_missing_input_exits_2(tmp_path):
    annotations, _ = make_inputs()
    storage.write_json(str(tmp_path / "anet.json"), annotations)
    done = run_job(
        "--proposals",
        str(tmp_path / "missing"),
        "--annotations",
        str(tmp_path / "anet.json"),
        "--output",
        str(tmp_path / "eval"),
    )
    assert done.returncode == 2
    assert "proposals not found" in done.stderr
    done = run_job(
        "--proposals",
        str(tmp_path),
        "--annotations",
        str(tmp_path / "nope.json"),
        "--output",
        str(tmp_path / "eval"),
    )
    assert done.returncode == 2 and "annotations not found" in done.stderr
    assert not (tmp_path / "eval").exists()


@pytest.mark.integration
def test_evaluate_job_on_s3(s3_bucket):
    annotations, table = make_inputs(seed=1)
    # MMAction2 anet_anno format this time: v_ ids, no subsets.
    anno_uri = storage.join(s3_bucket, "anet_anno_val.json")
    storage.write_json(
        anno_uri,
        {
            f"v_{video_id}": {
                "duration_second": info["duration"],
                "duration_frame": 1800,
                "feature_frame": 1792,
                "annotations": info["annotations"],
            }
            for video_id, info in annotations["database"].items()
        },
    )
    fs, path = storage.pyarrow_filesystem(storage.join(s3_bucket, "proposals"))
    write_hive(table, path, filesystem=fs)
    out = storage.join(s3_bucket, "eval")
    done = run_job(
        "--proposals",
        storage.join(s3_bucket, "proposals"),
        "--annotations",
        anno_uri,
        "--output",
        out,
    )
    assert done.returncode == 0, done.stderr
    metrics = storage.read_json(storage.join(out, "metrics.json"))
    check_metrics(metrics, M.evaluate(table, anno_uri))
    assert metrics["num_videos"] == 12
    assert storage.read_bytes(storage.join(out, "ar_an.png"))[:4] == b"\x89PNG"
