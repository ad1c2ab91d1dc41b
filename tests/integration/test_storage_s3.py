"""Storage against a moto S3 server on loopback."""

import pathlib

import pyarrow as pa
import pyarrow.parquet as pq

from core import storage


def test_s3_roundtrip_listing_and_local_copy(s3_bucket):
    storage.write_json(storage.join(s3_bucket, "runs", "r.json"), {"ok": True})
    storage.write_bytes(storage.join(s3_bucket, "videos", "a.mp4"), b"abc")
    storage.write_bytes(storage.join(s3_bucket, "videos", "deep", "b.webm"), b"de")
    storage.write_bytes(storage.join(s3_bucket, "videos", "readme.txt"), b"-")
    assert storage.read_json(storage.join(s3_bucket, "runs", "r.json")) == {"ok": True}
    found = storage.list_files(storage.join(s3_bucket, "videos"), storage.VIDEO_EXTENSIONS)
    assert found == [f"{s3_bucket}/videos/a.mp4", f"{s3_bucket}/videos/deep/b.webm"]
    with storage.local_path(found[1]) as p:
        assert pathlib.Path(p).read_bytes() == b"de"


def test_s3_pyarrow_filesystem_reads_parquet(s3_bucket):
    table = pa.table({"video_id": ["a", "b"], "score": [0.5, 0.25]})
    fs, path = storage.pyarrow_filesystem(storage.join(s3_bucket, "t"))
    fs.create_dir(path)
    pq.write_table(table, f"{path}/part-0.parquet", filesystem=fs)
    back = pq.read_table(path, filesystem=fs)
    assert back.to_pylist() == table.to_pylist()
