"""A planned corpus on storage: rendered videos, ActivityNet annotations and a manifest.

:func:`make_corpus` plans the corpus, renders and encodes its videos in a spawn-safe process
pool, one video per task, and writes ``videos/<video_id>.mp4``, ``annotations.json``
(ActivityNet v1.3) and ``manifest.csv`` under any storage URI.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tqdm import tqdm

from core import storage
from core.corpus.classes import CorpusArgumentError, class_names
from core.corpus.encode import check_encoder, write_video
from core.corpus.plan import PlanOptions, VideoSpec, plan_corpus

if TYPE_CHECKING:
    from typing import Unpack  # Python 3.11; only type checkers read it

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusSummary:
    """What :func:`make_corpus` wrote."""

    output_uri: str
    annotations_uri: str
    manifest_uri: str
    num_videos: int
    num_training: int
    num_validation: int
    num_instances: int
    total_frames: int
    total_duration: float  # seconds of video
    elapsed: float  # seconds of wall time


def annotations_json(specs: Sequence[VideoSpec], num_classes: int) -> dict:
    """ActivityNet v1.3 annotations of the planned videos, plus the ordered class list under
    ``classes`` (index = ``label_id``)."""
    names = class_names(num_classes)
    taxonomy = [{"nodeId": 0, "nodeName": "Root", "parentId": None, "parentName": None}]
    taxonomy += [
        {"nodeId": k + 1, "nodeName": name, "parentId": 0, "parentName": "Root"}
        for k, name in enumerate(names)
    ]
    database = {
        spec.video_id: {
            "subset": spec.subset,
            "duration": round(spec.duration, 6),
            "resolution": f"{spec.width}x{spec.height}",
            "fps": spec.fps,
            "url": "",
            "annotations": [
                {"segment": [round(t, 6) for t in inst.segment(spec.fps)], "label": inst.label}
                for inst in spec.instances
            ],
        }
        for spec in specs
    }
    return {"version": "synthetic-1", "classes": names, "taxonomy": taxonomy, "database": database}


MANIFEST_COLUMNS = ("video_id", "uri", "subset", "duration", "fps", "width", "height", "num_frames")


def manifest_csv(specs: Sequence[VideoSpec], output_uri: str) -> str:
    """``manifest.csv`` text: one row per video, ``uri`` the video's full URI."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for spec in specs:
        uri = _video_uri(output_uri, spec.video_id)
        writer.writerow(
            [spec.video_id, uri, spec.subset, round(spec.duration, 6), spec.fps]
            + [spec.width, spec.height, spec.num_frames]
        )
    return buffer.getvalue()


def _root(output_uri: str) -> str:
    """The output URI as it appears in the manifest: absolute for local paths."""
    if storage.is_local(output_uri):
        return os.path.abspath(storage.strip_protocol(output_uri))
    return output_uri.rstrip("/")


def _video_uri(root: str, vid: str) -> str:
    return storage.join(root, "videos", f"{vid}.mp4")


def _render_task(task: tuple[VideoSpec, str, int]) -> tuple[str, str]:
    """One pool task: renders one video into ``tmp_dir``; returns (video_id, local path)."""
    spec, tmp_dir, threads = task
    path = os.path.join(tmp_dir, f"{spec.video_id}.mp4")
    write_video(spec, path, threads=threads)
    return spec.video_id, path


def _render_all(
    specs: Sequence[VideoSpec], tmp_dir: str, workers: int
) -> Iterator[tuple[str, str]]:
    """Renders every video, in a spawn process pool when ``workers > 1``; yields (video_id,
    local path) as each finishes, in any order."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    tasks = [(spec, tmp_dir, threads) for spec in specs]
    if workers == 1:
        yield from map(_render_task, tasks)
        return
    # spawn: safe under Ray, threads and every OS; workers import only this module's deps.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_render_task, tasks, chunksize=1)


def _write_videos(specs: Sequence[VideoSpec], root: str, workers: int) -> None:
    """Renders every video to a local temporary file and copies it to ``root/videos/``."""
    storage.makedirs(storage.join(root, "videos"))
    log.info("rendering %d videos into %s with %d workers", len(specs), root, workers)
    with tempfile.TemporaryDirectory(prefix="corpus-") as tmp_dir:
        rendered = _render_all(specs, tmp_dir, workers)
        with contextlib.closing(rendered):
            for vid, path in tqdm(rendered, total=len(specs), desc="videos", unit="video"):
                storage.put_file(path, _video_uri(root, vid))
                os.unlink(path)


def make_corpus(
    output_uri: str,
    num_videos: int,
    num_classes: int,
    seed: int,
    *,
    workers: int | None = None,
    **plan_options: Unpack[PlanOptions],
) -> CorpusSummary:
    """Plans, renders and writes a corpus under ``output_uri`` (any storage URI).

    Writes ``videos/<video_id>.mp4`` first, then ``annotations.json`` and ``manifest.csv``, so
    a reader that finds the annotations finds every video. Each video is encoded to a local
    temporary file by a worker and copied to storage by this process.

    Args:
        workers: rendering processes; ``None`` = CPU count. Results do not depend on it.
        **plan_options: ``val_fraction``, ``min_duration``, ``max_duration``, ``resolutions``
            and ``fps_choices``, as :func:`~core.corpus.plan.plan_corpus` takes them.

    Raises:
        CorpusArgumentError: an argument is out of range.
    """
    started = time.perf_counter()
    specs = plan_corpus(num_videos, num_classes, seed, **plan_options)
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise CorpusArgumentError(f"workers must be at least 1, got {workers}")
    check_encoder()  # fail before starting workers
    root = _root(output_uri)
    _write_videos(specs, root, min(workers, len(specs)))
    annotations_uri = storage.join(root, "annotations.json")
    manifest_uri = storage.join(root, "manifest.csv")
    storage.write_json(annotations_uri, annotations_json(specs, num_classes))
    storage.write_text(manifest_uri, manifest_csv(specs, root))
    num_val = sum(spec.subset == "validation" for spec in specs)
    return CorpusSummary(
        output_uri=root,
        annotations_uri=annotations_uri,
        manifest_uri=manifest_uri,
        num_videos=len(specs),
        num_training=len(specs) - num_val,
        num_validation=num_val,
        num_instances=sum(len(spec.instances) for spec in specs),
        total_frames=sum(spec.num_frames for spec in specs),
        total_duration=sum(spec.duration for spec in specs),
        elapsed=time.perf_counter() - started,
    )
