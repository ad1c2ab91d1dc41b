"""``python -m jobs.make_corpus`` end to end: real H.264 files, real ActivityNet JSON."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import av
import pytest

from core import storage
from core.corpus import MANIFEST_COLUMNS, class_names, make_corpus

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ARGS = [
    "--num-videos", "4", "--num-classes", "3", "--seed", "11", "--val-fraction", "0.25",
    "--min-duration", "1", "--max-duration", "2.5", "--resolutions", "96x64,128x96",
    "--fps", "15,25",
]  # fmt: skip


def _run_job(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jobs.make_corpus", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "a"
    result = _run_job("--output", str(out), "--workers", "2", *ARGS)
    assert result.returncode == 0, result.stderr
    assert "wrote 4 videos" in result.stdout
    return out


def _manifest(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_annotations_are_activitynet_v13(corpus):
    anno = json.loads((corpus / "annotations.json").read_text())
    assert anno["version"] == "synthetic-1"
    assert anno["classes"] == class_names(3)
    assert sorted(anno["database"]) == [f"vid_{i:06d}" for i in range(4)]
    subsets = [entry["subset"] for entry in anno["database"].values()]
    assert subsets.count("validation") == 1 and subsets.count("training") == 3
    for entry in anno["database"].values():
        assert set(entry) == {"subset", "duration", "resolution", "fps", "url", "annotations"}
        assert entry["resolution"] in ("96x64", "128x96")
        assert entry["fps"] in (15.0, 25.0)
        for item in entry["annotations"]:
            start, end = item["segment"]
            assert 0.0 <= start < end <= entry["duration"]
            assert item["label"] in anno["classes"]


def test_videos_are_h264_and_as_long_as_annotated(corpus):
    anno = json.loads((corpus / "annotations.json").read_text())["database"]
    rows = _manifest(corpus / "manifest.csv")
    assert list(rows[0]) == list(MANIFEST_COLUMNS)
    assert len(rows) == 4
    for row in rows:
        assert row["uri"] == str(corpus / "videos" / f"{row['video_id']}.mp4")
        with av.open(row["uri"]) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert stream.codec_context.pix_fmt == "yuv420p"
            width, height = stream.codec_context.width, stream.codec_context.height
            assert f"{width}x{height}" == anno[row["video_id"]]["resolution"]
            assert (str(width), str(height)) == (row["width"], row["height"])
            real_duration = container.duration / av.time_base
            assert sum(1 for _ in container.decode(stream)) == int(row["num_frames"])
        assert abs(real_duration - anno[row["video_id"]]["duration"]) < 0.1
        assert abs(float(row["duration"]) - anno[row["video_id"]]["duration"]) < 1e-6


def test_same_seed_gives_identical_annotations_whatever_the_workers(corpus, tmp_path):
    out = tmp_path / "b"
    result = _run_job("--output", str(out), "--workers", "1", *ARGS)
    assert result.returncode == 0, result.stderr
    assert (out / "annotations.json").read_bytes() == (corpus / "annotations.json").read_bytes()
    manifest_a = (corpus / "manifest.csv").read_text().replace(str(corpus), "ROOT")
    assert (out / "manifest.csv").read_text().replace(str(out), "ROOT") == manifest_a


def test_bad_arguments_exit_2_with_a_clear_message(tmp_path):
    result = _run_job("--output", str(tmp_path / "c"), *ARGS[:2], "--num-classes", "99", *ARGS[4:])
    assert result.returncode == 2
    assert "num_classes must be between 1 and" in result.stderr
    assert not (tmp_path / "c").exists()


def test_library_writes_to_memory_storage():
    root = "memory://make-corpus-test/out"
    summary = make_corpus(
        root,
        2,
        2,
        seed=3,
        min_duration=1.0,
        max_duration=1.5,
        resolutions=[(64, 48)],
        fps_choices=[10.0],
        workers=2,  # encoded in worker processes, copied to memory:// by this one
    )
    assert summary.num_videos == 2
    anno = storage.read_json(storage.join(root, "annotations.json"))
    rows = list(csv.DictReader(io.StringIO(storage.read_text(storage.join(root, "manifest.csv")))))
    assert [r["uri"] for r in rows] == [f"{root}/videos/vid_00000{i}.mp4" for i in range(2)]
    for row in rows:
        with av.open(io.BytesIO(storage.read_bytes(row["uri"]))) as container:
            frames = sum(1 for _ in container.decode(video=0))
        assert frames == int(row["num_frames"])
        assert abs(frames / 10.0 - anno["database"][row["video_id"]]["duration"]) < 1e-6
    storage.remove("memory://make-corpus-test", recursive=True)
