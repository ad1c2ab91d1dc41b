import os
import pathlib

import pytest

from core import storage


def test_write_read_roundtrip_local(tmp_path):
    uri = str(tmp_path / "a" / "b.json")
    storage.write_json(uri, {"x": 1})
    assert storage.read_json(uri) == {"x": 1}
    assert storage.exists(uri)
    # no temporary files left behind
    assert os.listdir(tmp_path / "a") == ["b.json"]


def test_file_scheme_is_local(tmp_path):
    uri = "file://" + str(tmp_path / "c.txt")
    storage.write_text(uri, "hello")
    assert (tmp_path / "c.txt").read_text() == "hello"
    assert storage.read_text(uri) == "hello"


def test_memory_scheme_and_listing():
    base = "memory://storage-test-listing"
    for name in ("b.mp4", "a.MP4", "notes.txt", "sub/c.webm", ".hidden.mp4"):
        storage.write_bytes(storage.join(base, name), b"x")
    found = storage.list_files(base, storage.VIDEO_EXTENSIONS)
    assert found == [
        "memory:///storage-test-listing/a.MP4",
        "memory:///storage-test-listing/b.mp4",
        "memory:///storage-test-listing/sub/c.webm",
    ]
    with storage.local_path(found[0]) as p:
        assert pathlib.Path(p).read_bytes() == b"x"


def test_list_glob(tmp_path):
    for name in ("x1.mp4", "x2.mp4", "y.mp4"):
        (tmp_path / name).write_bytes(b"")
    found = storage.list_files(str(tmp_path / "x*.mp4"))
    assert [os.path.basename(f) for f in found] == ["x1.mp4", "x2.mp4"]


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        storage.list_files(str(tmp_path / "nope"))


def test_failed_local_write_leaves_old_file(tmp_path, monkeypatch):
    uri = str(tmp_path / "f.bin")
    storage.write_bytes(uri, b"old")

    class Boom(RuntimeError):
        pass

    def broken_replace(src, dst):
        raise Boom()

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(Boom):
        storage.write_bytes(uri, b"new")
    assert (tmp_path / "f.bin").read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]
