"""core.io.commits: each video once per table through retries, regrouping, concurrent runs,
killed writers; start-up from the index; retractions."""

from __future__ import annotations

import concurrent.futures as cf
import json
import threading

import pyarrow as pa
import pytest

from core import storage
from core.io import commits, index, leases


def _tables(ids: list[str], failed: tuple[str, ...] = ()) -> dict[str, pa.Table]:
    ok = [v for v in ids if v not in failed]
    bad = [v for v in ids if v in failed]
    return {
        "features": pa.table({"video_id": pa.array(ok, pa.string()), "x": [1.0] * len(ok)}),
        "errors": pa.table(
            {
                "video_id": pa.array(bad, pa.string()),
                "message": pa.array(["broken"] * len(bad), pa.string()),
            }
        ),  # fmt: skip
    }


def _rows(out: str, table: str = "features") -> list[str]:
    uri = commits.table_uri(out, table)
    if not storage.exists(uri) or not storage.list_files(uri, (".parquet",)):
        return []
    return sorted(commits.read_table(out, table).column("video_id").to_pylist())


@pytest.fixture(params=["local", "memory"])
def out(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path / "out")
        return
    uri = f"memory://commits-{id(tmp_path)}/out"
    yield uri
    storage.remove(uri, recursive=True)


def test_create_exclusive_has_one_winner(out):
    uri = storage.join(out, "x.json")
    with cf.ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda i: storage.create_exclusive(uri, str(i).encode()), range(32)))
    assert won.count(True) == 1
    assert storage.read_bytes(uri) == str(won.index(True)).encode()


def test_a_retried_batch_adds_nothing(out):
    first = commits.commit_batch(out, "r1", None, _tables(["a", "b"]), ["a", "b"])
    again = commits.commit_batch(out, "r1", None, _tables(["a", "b"]), ["a", "b"])
    assert first == again and first.committed == ["a", "b"] and first.dropped == []
    assert _rows(out) == ["a", "b"]
    assert not storage.exists(storage.join(out, commits.STAGING_DIR, "r1", first.batch_id))


def test_a_regrouped_retry_and_another_run_drop_what_others_claim(out):
    commits.commit_batch(out, "r1", None, _tables(["a", "b"]), ["a", "b"])
    regrouped = commits.commit_batch(out, "r1", None, _tables(["a", "c"]), ["a", "c"])
    other_run = commits.commit_batch(out, "r2", None, _tables(["b", "c", "d"]), ["b", "c", "d"])
    assert (regrouped.committed, regrouped.dropped) == (["c"], ["a"])
    assert (other_run.committed, other_run.dropped) == (["d"], ["b", "c"])
    assert _rows(out) == ["a", "b", "c", "d"]


def test_concurrent_writers_of_overlapping_batches_commit_each_video_once(out):
    videos = [f"v{i:02d}" for i in range(40)]
    batches = [videos[i : i + 10] for i in range(0, 40, 5)]  # every video in two batches
    barrier = threading.Barrier(len(batches))

    def write(k: int) -> commits.CommitResult:
        barrier.wait()
        return commits.commit_batch(out, f"run{k}", None, _tables(batches[k]), batches[k])

    with cf.ThreadPoolExecutor(len(batches)) as pool:
        results = list(pool.map(write, range(len(batches))))
    committed = sorted(v for r in results for v in r.committed)
    assert committed == videos and _rows(out) == videos


def test_recovery_undoes_a_dead_writers_claims_and_finishes_its_staged_batch(out):
    # a batch that died after claiming, before its manifest: rolled back
    batch = commits.batch_id_of("dead", ["a"])
    storage.write_json(storage.join(out, commits.STAGING_DIR, "dead", batch, "intent.json"), ["a"])
    assert commits._claim(out, "dead", batch, "a")
    # a batch that died after its manifest, before publishing: rolled forward
    staged = commits.batch_id_of("dead", ["b"])
    base = storage.join(out, commits.STAGING_DIR, "dead", staged)
    storage.write_bytes(storage.join(base, "features.parquet"),
                        commits.parquet_bytes(_tables(["b"])["features"]))  # fmt: skip
    assert commits._claim(out, "dead", staged, "b")
    manifest = {"batch_id": staged, "run_id": "dead", "video_ids": ["b"], "failed": [],
                "rows": {"features": 1}, "files": {"features": f"features/part-{staged}.parquet"}}  # fmt: skip
    storage.write_json(storage.join(base, "manifest.json"), manifest)
    assert commits.commit_batch(out, "r2", None, _tables(["a"]), ["a"]).dropped == ["a"]

    result = commits.recover(out)
    assert (result.rolled_back, result.rolled_forward, result.released_claims) == (1, 1, 1)
    assert _rows(out) == ["b"]
    assert commits.commit_batch(out, "r2", None, _tables(["a"]), ["a"]).committed == ["a"]
    assert _rows(out) == ["a", "b"]


def test_recovery_leaves_a_live_runs_batches_alone(out):
    with leases.RunLease(out, "live"):
        batch = commits.batch_id_of("live", ["a"])
        storage.write_json(
            storage.join(out, commits.STAGING_DIR, "live", batch, "intent.json"), ["a"]
        )
        assert commits._claim(out, "live", batch, "a")
        assert leases.run_is_alive(out, "live")
        assert commits.recover(out).live_runs == ["live"]
        assert storage.exists(storage.join(out, commits.CLAIMS_DIR, "a.json"))
    assert not leases.run_is_alive(out, "live")  # released at exit
    assert commits.recover(out).rolled_back == 1


def test_start_up_reads_the_index_not_every_marker(out, monkeypatch):
    done_log = index.IndexWriter(out, "r1")
    for k in range(5):
        ids = [f"v{k}a", f"v{k}b"]
        r = commits.commit_batch(out, "r1", None, _tables(ids, failed=(f"v{k}b",)), ids)
        done_log.add(r.committed, [r.batch_id] * 2, [True, False])
    done_log.close()  # run r1 finished: its markers need not be read
    late = commits.commit_batch(out, "killed", None, _tables(["late"]), ["late"])  # no index
    reads = []
    real = storage.read_json
    monkeypatch.setattr(storage, "read_json", lambda uri: reads.append(uri) or real(uri))
    done = index.committed_videos(out)
    assert len(done) == 11 and done["late"] == index.Committed(True, late.batch_id)
    assert done["v3a"].ok and not done["v3b"].ok
    assert [u.rsplit("/", 1)[1] for u in reads] == [f"{late.batch_id}.json"]


def test_retracting_failed_videos_lets_them_commit_again_once(out):
    r = commits.commit_batch(out, "r1", None, _tables(["a", "b"], failed=("b",)), ["a", "b"])
    assert _rows(out, "errors") == ["b"]
    failed = index.committed_videos(out).failed()
    assert failed == {"b": index.Committed(False, r.batch_id)}
    assert index.retract_failed(out, "r2", failed) == 1
    assert _rows(out, "errors") == [] and "b" not in index.committed_videos(out)
    commits.commit_batch(out, "r2", None, _tables(["b"]), ["b"])
    assert _rows(out) == ["a", "b"] and _rows(out, "errors") == []
    index.apply_retractions(out)  # already applied: nothing changes
    assert index.committed_videos(out)["b"].ok


def test_markers_record_files_rows_and_failures(out):
    r = commits.commit_batch(out, "r1", None, _tables(["a", "b"], failed=("b",)), ["a", "b"])
    marker = json.loads(
        storage.read_bytes(storage.join(out, commits.COMMITS_DIR, "r1", f"{r.batch_id}.json"))
    )
    assert marker["failed"] == ["b"] and marker["rows"] == {"features": 1, "errors": 1}
    assert marker["files"]["features"] == f"features/part-{r.batch_id}.parquet"
    empty = commits.commit_batch(out, "r1", None, _tables(["c"]), ["c"])
    assert not storage.exists(commits.part_uri(out, "errors", empty.batch_id))  # no empty files
