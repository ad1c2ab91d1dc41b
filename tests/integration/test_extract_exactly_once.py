"""jobs.extract's tables under reruns, a grown corpus, overlapping runs, retried tasks and
``--retry-failed``, read back the ways the README shows (one embedded Ray for the module)."""

from __future__ import annotations

import os
import pathlib
import shutil
import threading

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow.dataset as pads
import pytest
import ray

from core import config
from core.corpus import make_corpus
from core.io import index
from core.pipeline import columns as col
from core.pipeline import driver, inputs, stages, writer
from core.pipeline.config import ExtractConfig
from jobs import extract
from tests.integration import videos

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "extract" / "demo.py")
FAST = ["extractor.num_actors=1", "write_batch_size=2", "localizer.batch_size=4"]


@pytest.fixture(scope="module", autouse=True)
def embedded_ray():
    # workers import this module's task function by the name pytest gave it
    path = os.pathsep.join([str(REPO), str(pathlib.Path(__file__).parent)])
    ray.init(num_cpus=3, include_dashboard=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})  # fmt: skip
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
    """Three synthetic clips, one named like an ActivityNet id ending in ``_``, one damaged in
    the middle, one that is not a video."""
    root = tmp_path_factory.mktemp("exactly_once")
    make_corpus(str(root / "c"), 3, 2, seed=3, min_duration=3, max_duration=4,
                resolutions=((160, 120),), fps_choices=(15.0,), workers=1)  # fmt: skip
    folder = root / "videos"
    shutil.copytree(root / "c" / "videos", folder)
    first = sorted(folder.glob("*.mp4"))[0]
    shutil.copy(first, folder / "v_abcdefghij_.mp4")
    damaged_src = videos.make_video(root / "long.mp4", seconds=8, fps=25, extra=("-b:v", "2M"))
    videos.damage_middle(damaged_src, folder / "damaged.mp4")
    (folder / "notes.mp4").write_text("not a video")
    return folder


def run(*args: str) -> int:
    return extract.main(["--config", CONFIG, *args, "--cfg-options", *FAST])


def one(sql: str):
    """The first value of the first row (a DuckDB relation keeps no result: fetch it whole)."""
    return duckdb.sql(sql).fetchall()[0][0]


def read_all(out: pathlib.Path, table: str) -> dict[str, int]:
    """Row counts of one table through DuckDB, Polars, pandas and pyarrow, as the README reads."""
    glob = f"{out}/{table}/*.parquet"
    return {
        "duckdb": one(f"SELECT count(*) FROM read_parquet('{glob}')"),
        "polars": pl.read_parquet(glob).height,
        "pandas": len(pd.read_parquet(out / table)),
        "pyarrow": pads.dataset(out / table, format="parquet").count_rows(),
    }


def ids_of(out: pathlib.Path, table: str) -> list[str]:
    if not list(pathlib.Path(out, table).glob("*.parquet")):
        return []  # a table can lose its last file: --retry-failed took back its error rows
    q = f"SELECT video_id FROM read_parquet('{out}/{table}/*.parquet') ORDER BY 1"
    return [r[0] for r in duckdb.sql(q).fetchall()]


def test_grown_corpus_damaged_video_and_every_reader(corpus, tmp_path, capsys):
    folder = tmp_path / "videos"
    shutil.copytree(corpus, folder)
    out = tmp_path / "out"
    assert run("--input", str(folder), "--output", str(out)) == 0
    feats = ids_of(out, "features")
    assert "v_abcdefghij_" in feats and "damaged" in feats and len(feats) == 5
    damaged = one(f"SELECT num_decode_errors FROM read_parquet('{out}/features/*.parquet') "
                  "WHERE video_id = 'damaged'")  # fmt: skip
    assert damaged > 0
    errors = duckdb.sql(f"SELECT video_id, error_type, fatal FROM read_parquet("
                        f"'{out}/errors/*.parquet') ORDER BY 1").fetchall()  # fmt: skip
    assert errors == [("damaged", "damaged", False), ("notes", "open", True)]
    assert set(read_all(out, "features").values()) == {5}

    shutil.copy(sorted(folder.glob("vid_*.mp4"))[0], folder / "new clip.mp4")
    capsys.readouterr()
    assert run("--input", str(folder), "--output", str(out)) == 0
    printed = capsys.readouterr().out
    assert "6 already done" in printed and "processed 1 " in printed
    assert ids_of(out, "features") == sorted([*feats, "new~20clip"])
    props = read_all(out, "proposals")
    assert len(set(props.values())) == 1
    dupes = duckdb.sql(f"SELECT video_id, rank FROM read_parquet('{out}/proposals/*.parquet') "
                       "GROUP BY ALL HAVING count(*) > 1").fetchall()  # fmt: skip
    assert dupes == []
    labels = one(f"SELECT count(*) FROM read_parquet('{out}/proposals/*.parquet') "
                 "WHERE label IS NULL OR uri IS NULL")  # fmt: skip
    assert labels == 0


def test_two_overlapping_runs_then_a_rerun_give_each_video_once(corpus, tmp_path):
    out = str(tmp_path / "out")
    options = {"extractor.num_actors": 1, "write_batch_size": 2, "localizer.batch_size": 4}
    cfg, raw = config.load(CONFIG, ExtractConfig, options)
    videos_in = inputs.list_inputs(str(corpus))
    summaries: dict[str, driver.ExtractSummary] = {}

    def go(name: str, order: list) -> None:
        summaries[name] = driver.run_extract(cfg, raw.pretty_text, order, out, name)

    threads = [threading.Thread(target=go, args=("run-a", videos_in)),
               threading.Thread(target=go, args=("run-b", videos_in[::-1]))]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a, b = summaries["run-a"], summaries["run-b"]
    assert a.num_ok + a.num_failed + b.num_ok + b.num_failed + a.num_left + b.num_left >= 6
    again = driver.run_extract(cfg, raw.pretty_text, videos_in, out, "run-c")
    assert again.num_left == 0
    assert len(ids_of(pathlib.Path(out), "features")) == 5
    assert ids_of(pathlib.Path(out), "errors") == ["damaged", "notes"]
    assert set(index.committed_video_ids(out)) == {v.video_id for v in videos_in}


_ATTEMPTS = "attempts"


def _commit_then_fail_once(batch: dict, ctx: writer.WriteContext, flag_dir: str) -> dict:
    """The writer, and then a crash of the task's first attempt (after it committed)."""
    out = writer.write_batch(batch, ctx)
    flag = pathlib.Path(flag_dir, str(batch["video_id"][0]))
    if not flag.exists():
        flag.write_text("crashed once")
        raise RuntimeError("the worker died after committing")
    return out


def test_a_retried_or_regrouped_write_task_adds_nothing(corpus, tmp_path):
    cfg, _ = config.load(CONFIG, ExtractConfig)
    out = str(tmp_path / "out")
    vids = [v for v in inputs.list_inputs(str(corpus)) if v.video_id.startswith("vid_")]
    rows = [{"video_id": v.video_id, "uri": v.uri} for v in vids]
    batch = stages.LabelledProposals(cfg, None)(stages.SnippetFeatures(cfg)(
        {k: np.asarray([r[k] for r in rows], dtype=object) for k in ("video_id", "uri")}))  # fmt: skip
    ctx = writer.WriteContext(out, "r1", ["a", "b", "c", "d"], "random", "x", "random", {})
    flags = tmp_path / "flags"
    flags.mkdir()
    ds = ray.data.from_items([{k: batch[k][i] for k in batch} for i in range(len(vids))])
    ds = ds.map_batches(_commit_then_fail_once, fn_kwargs={"ctx": ctx, "flag_dir": str(flags)},
                        batch_size=None, max_retries=2, retry_exceptions=True)  # fmt: skip
    summaries = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    assert list(flags.iterdir())  # each task's first attempt did crash after its commit
    assert all(summary[col.COMMITTED].all() for summary in summaries)
    regrouped = {k: v[:2] for k, v in batch.items()}
    again = writer.write_batch(regrouped, ctx)  # a retry that groups the videos differently
    assert not again[col.COMMITTED].any()
    assert ids_of(tmp_path / "out", "features") == sorted(v.video_id for v in vids)


def test_retry_failed_and_the_failed_fraction(corpus, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "bad.mp4").write_text("not a video yet")
    shutil.copy(sorted(corpus.glob("vid_*.mp4"))[0], folder / "good.mp4")
    out = tmp_path / "out"
    assert run("--input", str(folder), "--output", str(out)) == 0  # 1 of 2 failed: 50% is fine
    assert ids_of(out, "errors") == ["bad"]
    shutil.copy(sorted(corpus.glob("vid_*.mp4"))[1], folder / "bad.mp4")  # fixed at the source
    assert run("--input", str(folder), "--output", str(out)) == 0
    assert ids_of(out, "errors") == ["bad"]  # without --retry-failed, failures stay done
    assert run("--input", str(folder), "--output", str(out), "--retry-failed") == 0
    assert ids_of(out, "errors") == [] and ids_of(out, "features") == ["bad", "good"]

    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("a", "b"):
        (broken / f"{name}.mp4").write_text("not a video")
    assert run("--input", str(broken), "--output", str(tmp_path / "o2")) == 1  # all failed
    assert ids_of(tmp_path / "o2", "errors") == ["a", "b"]  # written before failing
