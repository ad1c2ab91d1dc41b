"""Streamed S3 inputs (``storage.stream_inputs``) against a moto server on loopback: the same
snippets and features as the local file, range reads cut off mid-body retried, a read that
keeps failing never committed (left for a later run), each video committed once."""

from __future__ import annotations

import io
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from core import storage
from core.video import SamplingConfig, iter_snippets
from tests.integration import videos
from tests.integration.loopback_proxy import LoopbackProxy, Request

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "extract" / "demo.py")
SAMPLING = SamplingConfig(clip_len=1, clip_interval=4, frame_interval=1, short_side=64,
                          crop_size=64, batch_size=8)  # fmt: skip
SMALL_BLOCKS = dict(block_size=4096, readahead=2)  # about 9 blocks for a 35 KB video


class RangeCutProxy(LoopbackProxy):
    """A loopback proxy in front of moto that cuts ranged GETs of one object off mid-body.

    A ranged GET of a path containing ``key`` whose first byte is at or past ``from_byte``
    gets its headers (the full ``Content-Length``) and half its body, then the connection
    closes: the first ``cuts`` such requests, or all of them when ``cuts`` is None (a
    persistent fault). Everything else is forwarded unchanged.
    """

    def __init__(self, upstream: str, key: str, from_byte: int = 0, cuts: int | None = 3) -> None:
        super().__init__(upstream)
        self.key, self.from_byte, self.cuts_left = key, from_byte, cuts
        self.cut = 0

    def _should_cut(self, method: str, path: str, range_header: str | None) -> bool:
        match = re.match(r"bytes=(\d+)-", range_header or "")
        if method != "GET" or self.key not in path or not match:
            return False
        if int(match.group(1)) < self.from_byte:
            return False
        with self.lock:
            if self.cuts_left is not None:
                if self.cuts_left == 0:
                    return False
                self.cuts_left -= 1
            self.cut += 1
            return True

    def handle(self, request: Request) -> None:
        conn, resp = request.open_upstream(request.read_body())
        data = resp.read()
        conn.close()
        if not self._should_cut(request.command, request.path, request.headers.get("Range")):
            request.relay(resp, data)
            return
        request.send_head(resp.status, resp.getheaders(), len(data))
        request.wfile.write(data[: len(data) // 2])  # half the body, then the connection drops
        request.wfile.flush()
        request.close_connection = True
        request.connection.shutdown(2)


@pytest.fixture(scope="module")
def video_files(tmp_path_factory) -> dict[str, pathlib.Path]:
    """An MP4 with its index at the end (the reader seeks there and back), a faststart MP4,
    a VP9 WebM (each about 35 KB), and a faststart MP4 of about 200 KB."""
    root = tmp_path_factory.mktemp("stream_videos")
    return {
        "index_at_end.mp4": pathlib.Path(videos.make_video(root / "index_at_end.mp4", 320, 240, seconds=4)),
        "faststart.mp4": pathlib.Path(videos.make_video(root / "faststart.mp4", 320, 240, seconds=4,
                                                        extra=("-movflags", "+faststart"))),
        "vp9.webm": pathlib.Path(videos.make_video(root / "vp9.webm", 320, 240, seconds=3,
                                                   codec="libvpx-vp9")),
        "large.mp4": pathlib.Path(videos.make_video(root / "large.mp4", 640, 480, seconds=8,
                                                    extra=("-movflags", "+faststart"))),
    }  # fmt: skip


def _snippets_of(source) -> list:
    return list(iter_snippets(source, SAMPLING))


def _assert_same(got: list, want: list) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a.clips_NTHWC, b.clips_NTHWC)
        assert (a.num_frames, a.info, a.truncated, a.num_decode_errors) == (
            b.num_frames, b.info, b.truncated, b.num_decode_errors)  # fmt: skip
    assert sum(len(b.clips_NTHWC) for b in want) > 10


@pytest.mark.parametrize("name", ["index_at_end.mp4", "faststart.mp4", "vp9.webm"])
def test_a_streamed_video_gives_the_snippets_of_the_local_file(video_files, s3_bucket, name):
    uri = f"{s3_bucket}/in/{name}"
    storage.put_file(str(video_files[name]), uri)
    with storage.open_input(uri, **SMALL_BLOCKS) as source:
        got = _snippets_of(source)
        assert source.error is None
    _assert_same(got, _snippets_of(str(video_files[name])))


def test_open_input_of_a_missing_object_is_file_not_found(s3_bucket):
    with pytest.raises(FileNotFoundError), storage.open_input(f"{s3_bucket}/nope.mp4"):
        pass


def _proxy_bucket(monkeypatch, proxy: RangeCutProxy, bucket: str) -> str:
    """The bucket's URI as seen through ``proxy`` (a client of its own, one botocore try)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    return bucket


def test_reads_cut_off_mid_body_are_retried_and_give_the_same_snippets(
    video_files, s3_server, s3_bucket, monkeypatch
):
    path = video_files["faststart.mp4"]
    storage.put_file(str(path), f"{s3_bucket}/cut/faststart.mp4")
    with RangeCutProxy(s3_server, "/cut/faststart.mp4", cuts=4) as proxy:
        bucket = _proxy_bucket(monkeypatch, proxy, s3_bucket)
        with storage.open_input(f"{bucket}/cut/faststart.mp4", **SMALL_BLOCKS,
                                backoff_s=0.01) as source:  # fmt: skip
            got = _snippets_of(source)
            assert source.error is None
    assert proxy.cut == 4
    _assert_same(got, _snippets_of(str(path)))


def test_a_read_that_keeps_failing_mid_stream_is_an_input_read_error_never_a_short_video(
    video_files, s3_server, s3_bucket, monkeypatch
):
    from core.pipeline.stages import _snippets

    class CpuDecoder:
        def iter_snippets(self, source):
            return iter_snippets(source, SAMPLING)

    path = video_files["large.mp4"]
    size = path.stat().st_size
    storage.put_file(str(path), f"{s3_bucket}/dead/large.mp4")
    with RangeCutProxy(s3_server, "/dead/large.mp4", from_byte=size // 2, cuts=None) as proxy:
        bucket = _proxy_bucket(monkeypatch, proxy, s3_bucket)
        with storage.open_input(f"{bucket}/dead/large.mp4", **SMALL_BLOCKS, attempts=2,
                                backoff_s=0.01) as source:  # fmt: skip
            batches = _snippets(CpuDecoder(), source)
            first = next(batches)  # the first half reads: snippets come before the failure
            assert len(first.clips_NTHWC) == SAMPLING.batch_size
            with pytest.raises(storage.InputReadError, match="failed 2 times"):
                for _ in batches:
                    pass
            assert isinstance(source.error, storage.InputReadError)
    assert proxy.cut >= 2


# ----------------------------------------------------------------------------- the job


def _run(endpoint: str, *args: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "AWS_ENDPOINT_URL_S3": endpoint, "AWS_MAX_ATTEMPTS": "2"}
    cmd = [sys.executable, "-m", "jobs.extract", "--config", CONFIG, "--num-cpus", "2", *args,
           "--cfg-options", "extractor.num_actors=1", "write_batch_size=2",
           "localizer.batch_size=4", *options]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=900)


def _features(table_uri: str) -> dict[str, np.ndarray]:
    """``{video_id: feats_CT}`` of a features table, each id at most once, listed afresh."""
    fs, _ = storage.filesystem(table_uri)
    fs.invalidate_cache()
    out: dict[str, np.ndarray] = {}
    for uri in storage.list_files(table_uri, (".parquet",)):
        rows = pq.read_table(io.BytesIO(storage.read_bytes(uri))).to_pylist()
        for row in rows:
            assert row["video_id"] not in out, f"{row['video_id']} committed twice"
            out[row["video_id"]] = np.asarray(row["features"], dtype=np.float32)
    return out


def test_the_job_over_streamed_s3_inputs_matches_local_and_commits_each_video_once(
    video_files, tmp_path, s3_server, s3_bucket
):
    local = tmp_path / "videos"
    local.mkdir()
    names = ["index_at_end.mp4", "large.mp4", "vp9.webm", "faststart.mp4", "large.mp4"]
    for i, name in enumerate(names):
        target = local / f"v{i}{pathlib.Path(name).suffix}"
        target.write_bytes(video_files[name].read_bytes())
        storage.put_file(str(target), f"{s3_bucket}/in/{target.name}")
    stuck = "v1.mp4"
    small = ("storage.stream_block_size=65536", "storage.stream_readahead=2")

    result = _run(s3_server, "--input", str(local), "--output", str(tmp_path / "local"))
    assert result.returncode == 0, result.stderr[-3000:]
    want = _features(str(tmp_path / "local" / "features"))
    assert len(want) == 5

    # a read that keeps failing past the first 64 KiB of one video: left, never written
    size = (local / stuck).stat().st_size
    assert size > 2 * 65536  # the first block reads, a later one never does
    with RangeCutProxy(s3_server, f"/in/{stuck}", from_byte=65536, cuts=None) as proxy:
        result = _run(proxy.endpoint, "--input", f"{s3_bucket}/in/", "--output",
                      f"{s3_bucket}/streamed", options=small)  # fmt: skip
    assert proxy.cut > 0
    assert result.returncode == 75, result.stderr[-3000:]
    assert "left for a later run" in result.stderr
    first = _features(f"{s3_bucket}/streamed/features")
    assert sorted(first) == sorted(v for v in want if v != "v1")
    errors_uri = f"{s3_bucket}/streamed/errors"  # none at all here: no file is broken
    errors = storage.list_files(errors_uri, (".parquet",)) if storage.exists(errors_uri) else []
    error_ids = [r["video_id"] for u in errors
                 for r in pq.read_table(io.BytesIO(storage.read_bytes(u))).to_pylist()]  # fmt: skip
    assert "v1" not in error_ids

    result = _run(s3_server, "--input", f"{s3_bucket}/in/", "--output", f"{s3_bucket}/streamed",
                  options=small)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 already done" in result.stdout
    streamed = _features(f"{s3_bucket}/streamed/features")

    result = _run(s3_server, "--input", f"{s3_bucket}/in/", "--output", f"{s3_bucket}/whole",
                  options=("storage.stream_inputs=False",))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    whole = _features(f"{s3_bucket}/whole/features")

    assert sorted(streamed) == sorted(whole) == sorted(want)
    for vid, feats in want.items():
        np.testing.assert_array_equal(streamed[vid], feats)
        np.testing.assert_array_equal(whole[vid], feats)


def test_bad_stream_settings_fail_at_start_naming_the_key(tmp_path):
    result = _run("", "--input", str(tmp_path), "--output", str(tmp_path / "o"),
                  options=("storage.stream_block_size=1000",))  # fmt: skip
    assert result.returncode == 2
    assert "stream_block_size" in result.stderr and "65536" in result.stderr
    result = _run("", "--input", str(tmp_path), "--output", str(tmp_path / "o"),
                  options=("storage.stream_inputz=False",))  # fmt: skip
    assert result.returncode == 2
    assert "storage.stream_inputz" in result.stderr
