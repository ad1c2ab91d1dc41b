"""Training data: features Parquet joined with the annotations, split, sharded, batched.

Driver side (no Ray needed): :func:`prepare_training_set` reads the annotations and the small
columns of the features table, splits the videos into training and validation (see
:class:`core.train.config.DataSection`), and turns every video's segments into the model's
targets: seconds divided by the features' ``duration`` (the seconds the T positions span, what
MMAction2 calls the corrected duration), clipped to [0, 1], labels as ids of the class list.

Worker side: each worker reads its own rows straight from the Parquet files with pyarrow
(:func:`read_features`; 1.6 GB for ActivityNet's training set, no Ray Data between the files
and the worker): the videos of :func:`shard_ids`, every ``world``-th of the sorted training
ids from ``rank`` on, so a shard is a function of the ids alone and every (re)start reads the
same one. The rows are ordered by video id (:func:`collect_shard`); every epoch then draws a
permutation from ``(seed, epoch, rank)`` alone (:func:`epoch_batches`), so an interrupted and
resumed run sees the same batches as an uninterrupted one. Rank 0 validates on the whole
validation set, which it reads the same way.

Shape legend: N videos of a shard, C channels, T positions, G segments of a video, B batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from core import storage
from core.eval.annotations import (
    Annotations,
    VideoAnnotation,
    class_names,
    filter_subset,
    load_annotations_and_classes,
    resolve_ids,
)
from core.io.tables import VIDEO_ID
from core.train.config import DataSection

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Columns of the rows the trainer's datasets carry.
FEATURES = "features"  # C × T float32, flattened row-major (core.io.tables.features_schema)
DURATION = "feature_span_s"  # seconds the T positions span
GT = "gt_G3"  # ground truth flattened: [start, end, label_id] * G, start/end normalised
READ_COLUMNS = (VIDEO_ID, FEATURES, "C", "T", DURATION)
TRAIN, VAL = "train", "val"


class TrainDataError(ValueError):
    """Inputs that cannot train: no features, no annotated videos, shapes that do not fit."""


@dataclasses.dataclass
class TrainingSet:
    """What the trainer needs to know about its data (small: no features).

    Attributes:
        features_uri: The features table folder (absolute URI).
        C, T: Feature channels and positions of every row.
        class_names: Label order of the action head (index = label id).
        gt: Per split (``train`` / ``val``) and features ``video_id``: (G, 3) float64 rows of
            normalised start, end and label id.
        val_annotations: Validation ground truth in seconds (for the metrics), keyed by
            annotation id, only videos that have features.
    """

    features_uri: str
    C: int
    T: int
    class_names: list[str]
    gt: dict[str, dict[str, np.ndarray]]
    val_annotations: Annotations

    def counts(self) -> dict[str, int]:
        return {split: len(videos) for split, videos in self.gt.items()}


# ----------------------------------------------------------------------------- annotations


def hash_fraction(video_id: str) -> float:
    """A number in [0, 1) fixed by the id alone (sha1), for a split that never moves."""
    digest = hashlib.sha1(video_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_annotations(
    annos: Annotations, cfg: DataSection, val_annos: Annotations | None = None
) -> tuple[Annotations, Annotations]:
    """Training and validation videos (see :class:`DataSection` for the rules)."""
    if val_annos is not None:
        train = {k: v for k, v in annos.items() if k not in val_annos}
        return train, dict(val_annos)
    if any(v.subset is not None for v in annos.values()):
        return filter_subset(annos, cfg.train_subset), filter_subset(annos, cfg.val_subset)
    val = {k: v for k, v in annos.items() if hash_fraction(k) < cfg.val_fraction}
    train = {k: v for k, v in annos.items() if k not in val}
    log.info(
        "annotations have no subsets: %d videos validate by val_fraction=%.2f", len(val),
        cfg.val_fraction,
    )  # fmt: skip
    return train, val


def load_split(
    annotations_uri: str, cfg: DataSection
) -> tuple[Annotations, Annotations, list[str]]:
    """Reads the annotations (and ``val_annotations``), splits them, fixes the class order."""
    annos, file_classes = load_annotations_and_classes(annotations_uri)
    val_annos = None
    if cfg.val_annotations:
        val_annos, val_classes = load_annotations_and_classes(cfg.val_annotations)
        file_classes = file_classes or val_classes
    train, val = split_annotations(annos, cfg, val_annos)
    if not train:
        raise TrainDataError(f"no training videos in {annotations_uri} (subset rules: {cfg})")
    names = class_names({**train, **val}, cfg.classes or file_classes)
    return train, val, names


# ----------------------------------------------------------------------------- features


def features_table_uri(uri: str) -> str:
    """The features table folder: ``uri/features`` when ``uri`` is a job's output (extract,
    import_features), else ``uri`` itself."""
    candidate = storage.join(uri, "features")
    return candidate if storage.exists(candidate) else uri


def read_feature_index(features_uri: str) -> pa.Table:
    """``video_id``, ``C``, ``T``, ``duration`` of every features row (no features read).

    Raises:
        TrainDataError: no Parquet files, or a video id that occurs twice.
    """
    if not storage.exists(features_uri):
        raise TrainDataError(f"features not found: {features_uri}")
    fs, path = storage.pyarrow_filesystem(features_uri)
    dataset = pads.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
    if not dataset.files:
        raise TrainDataError(f"no Parquet files under {features_uri}")
    index = dataset.to_table(columns=[VIDEO_ID, "C", "T", DURATION])
    ids = index.column(VIDEO_ID)
    if pc.count_distinct(ids).as_py() != len(ids):
        counts = pc.value_counts(ids).to_pylist()
        dupes = [c["values"] for c in counts if c["counts"] > 1][:5]
        raise TrainDataError(
            f"features under {features_uri} hold some videos more than once (e.g. {dupes}): "
            "point --features at one run's features"
        )
    return index


def feature_shape(index: pa.Table) -> tuple[int, int]:
    """The (C, T) every row shares (raises TrainDataError if rows differ)."""
    shapes = {(c, t) for c, t in zip(index["C"].to_pylist(), index["T"].to_pylist(), strict=True)}
    if len(shapes) != 1:
        raise TrainDataError(f"features rows differ in shape (C, T): {sorted(shapes)[:5]}")
    return shapes.pop()


def normalized_ground_truth(
    video: VideoAnnotation, duration: float, class_of: Mapping[str, int]
) -> np.ndarray:
    """(G, 3) rows of start / duration, end / duration (clipped to [0, 1]) and label id,
    as MMAction2's ``GenerateLocalizationLabels`` with the features' duration."""
    if duration <= 0:
        raise TrainDataError(f"video {video.video_id} has features duration {duration}")
    out_G3 = np.zeros((len(video.labels), 3), dtype=np.float64)
    out_G3[:, :2] = np.clip(video.segments_N2 / duration, 0.0, 1.0)
    out_G3[:, 2] = [class_of[label] for label in video.labels]
    return out_G3


def match_ground_truth(
    annos: Annotations, index: pa.Table, class_of: Mapping[str, int]
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Ground truth keyed by features ``video_id`` for the annotated videos that have
    features; also the annotation ids that have none."""
    durations = dict(zip(index[VIDEO_ID].to_pylist(), index[DURATION].to_pylist(), strict=True))
    to_anno = resolve_ids(durations, annos)
    gt = {
        fid: normalized_ground_truth(annos[aid], durations[fid], class_of)
        for fid, aid in sorted(to_anno.items())
    }
    missing = sorted(set(annos) - set(to_anno.values()))
    return gt, missing


def prepare_training_set(features_uri: str, annotations_uri: str, cfg: DataSection) -> TrainingSet:
    """Joins annotations with the features index (see the module docstring).

    Raises:
        TrainDataError: no features, no annotated video with features, mixed shapes.
    """
    table_uri = features_table_uri(features_uri)
    index = read_feature_index(table_uri)
    C, T = feature_shape(index)
    train, val, names = load_split(annotations_uri, cfg)
    class_of = {name: i for i, name in enumerate(names)}
    gt: dict[str, dict[str, np.ndarray]] = {}
    for split, annos in ((TRAIN, train), (VAL, val)):
        gt[split], missing = match_ground_truth(annos, index, class_of)
        if missing:
            log.warning(
                "%d %s videos have no features and are left out (e.g. %s)", len(missing), split,
                missing[:3],
            )  # fmt: skip
    if not gt[TRAIN]:
        raise TrainDataError(
            f"no training video of {annotations_uri} has features under {table_uri} "
            f"(annotation ids e.g. {list(train)[:3]}, features ids e.g. "
            f"{index[VIDEO_ID].to_pylist()[:3]})"
        )
    if not gt[VAL]:
        raise TrainDataError("no validation video has features: nothing to pick the best model")
    with_features = set(resolve_ids(gt[VAL], val).values())
    val_annos = {k: v for k, v in val.items() if k in with_features}
    return TrainingSet(table_uri, C, T, names, gt, val_annos)


# ----------------------------------------------------------------------------- rows


def join_ground_truth(batch: pa.Table, gt: Mapping[str, np.ndarray]) -> pa.Table:
    """Keeps the rows whose video has ground truth and adds it as the :data:`GT` column."""
    ids = batch.column(VIDEO_ID).to_pylist()
    keep = [i for i, vid in enumerate(ids) if vid in gt]
    out = batch.select([VIDEO_ID, FEATURES, DURATION]).take(pa.array(keep, pa.int64()))
    flat = [gt[ids[i]].reshape(-1).tolist() for i in keep]
    return out.append_column(GT, pa.array(flat, pa.list_(pa.float64())))


def shard_ids(training_set: TrainingSet, split: str, rank: int, world: int) -> list[str]:
    """The split's video ids this worker trains on: every ``world``-th of the sorted ids,
    from ``rank`` on (a function of the ids alone, so every start gives the same shard)."""
    return sorted(training_set.gt[split])[rank::world]


# ----------------------------------------------------------------------------- worker side


@dataclasses.dataclass
class ShardArrays:
    """One worker's rows, in memory, ordered by video id.

    Attributes:
        video_ids: N ids.
        feats_NCT: float32 features: a numpy array, or a tensor on the device for the
            ``device_splits`` of :func:`read_shards`.
        durations_N: seconds spanned by the T positions.
        gt: N arrays (G, 3) of normalised start, end, label id.
    """

    video_ids: list[str]
    feats_NCT: np.ndarray
    durations_N: np.ndarray
    gt: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.video_ids)


def collect_shard(batches: Iterable[pa.Table], C: int, T: int) -> ShardArrays:
    """Gathers Arrow batches of :func:`features_dataset` rows into arrays sorted by video id."""
    tables = [b for b in batches if b.num_rows]
    if not tables:
        empty = np.zeros((0, C, T), np.float32)
        return ShardArrays([], empty, np.zeros(0), [])
    table = pa.concat_tables(tables)
    order_N = pc.sort_indices(table, sort_keys=[(VIDEO_ID, "ascending")]).to_numpy()
    n = table.num_rows
    chunks = [c.flatten().to_numpy(zero_copy_only=False) for c in table.column(FEATURES).chunks]
    values = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    feats_NCT = values.astype(np.float32, copy=False).reshape(n, C, T)[order_N]  # a copy
    table = table.select([VIDEO_ID, DURATION, GT]).take(pa.array(order_N))
    gt = [np.asarray(g, np.float64).reshape(-1, 3) for g in table.column(GT).to_pylist()]
    return ShardArrays(
        video_ids=table.column(VIDEO_ID).to_pylist(),
        feats_NCT=feats_NCT,
        durations_N=table.column(DURATION).to_numpy().astype(np.float64),
        gt=gt,
    )


def epoch_seed(seed: int, epoch: int, rank: int, stream: int = 0) -> list[int]:
    """Seed material for numpy / torch generators of one (seed, epoch, rank, stream)."""
    return [seed, epoch, rank, stream]


def torch_seed(seed: int, epoch: int, rank: int, stream: int) -> int:
    """A 63-bit torch seed from the same material as :func:`epoch_seed`."""
    rng = np.random.default_rng(epoch_seed(seed, epoch, rank, stream))
    return int(rng.integers(0, 2**63 - 1))


def epoch_batches(
    num_rows: int, batch_size: int, num_steps: int, seed: int, epoch: int, rank: int
) -> list[np.ndarray]:
    """Row indices of each of ``num_steps`` batches: a permutation drawn from
    (seed, epoch, rank) alone, cut into ``batch_size`` pieces (the rest is dropped, as
    MMAction2's ``drop_last=True``)."""
    if num_steps * batch_size > num_rows:
        raise ValueError(f"{num_steps} batches of {batch_size} need more than {num_rows} rows")
    order = np.random.default_rng(epoch_seed(seed, epoch, rank)).permutation(num_rows)
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(num_steps)]


@contextlib.contextmanager
def arrow_threads(count: int) -> Iterator[None]:
    """Arrow's CPU thread pool at least ``count`` threads meanwhile. Arrow sizes it from
    ``OMP_NUM_THREADS``, which Ray sets to a task's or actor's CPUs (2 for a training worker),
    and decodes every file's pages there: the files read side by side decoded two at a time."""
    before = pa.cpu_count()
    pa.set_cpu_count(max(before, count))
    try:
        yield
    finally:
        pa.set_cpu_count(before)


def read_features(
    training_set: TrainingSet, split: str, ids: list[str] | None = None
) -> ShardArrays:
    """The rows of ``ids`` (default: the whole split), see :func:`read_shards`."""
    ids = sorted(training_set.gt[split]) if ids is None else ids
    return read_shards(training_set, {split: ids})[split]


def read_shards(
    training_set: TrainingSet,
    ids_by_split: Mapping[str, list[str]],
    device: torch.device | str | None = None,
    device_splits: Iterable[str] = (),
) -> dict[str, ShardArrays]:
    """The rows of each split's ``ids``, ordered by id, read straight from the Parquet files
    with pyarrow by this process (no Ray Data: a worker reads only what it trains on).

    One pass over the files for all splits, a file per thread; each file's features go
    straight to their rows' places in the output (no table of the whole shard, no sort), for
    ``device_splits`` into one float32 tensor on ``device`` (the copy of one file overlaps
    the decoding of the next), for the others into a numpy array.

    Raises:
        TrainDataError: a requested video is not (or no longer) in the files.
    """
    import torch  # here: the driver imports this module before torch is needed (jobs.train)

    C, T = training_set.C, training_set.T
    device_splits = set(device_splits)
    place = {}  # video id -> (split, row)
    out: dict[str, ShardArrays] = {}
    for split, ids in ids_by_split.items():
        ordered = sorted(ids)
        place.update((vid, (split, row)) for row, vid in enumerate(ordered))
        feats = (
            torch.empty((len(ordered), C, T), dtype=torch.float32, device=device)
            if split in device_splits
            else np.empty((len(ordered), C, T), np.float32)
        )
        gt = [training_set.gt[split][vid] for vid in ordered]
        out[split] = ShardArrays(ordered, feats, np.full(len(ordered), np.nan), gt)
    fs, path = storage.pyarrow_filesystem(training_set.features_uri)
    dataset = pads.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
    wanted = pads.field(VIDEO_ID).isin(pa.array(list(place)))
    found: list[list[str]] = []

    def read(fragment) -> None:
        table = fragment.to_table(columns=[VIDEO_ID, FEATURES, DURATION], filter=wanted)
        ids = table.column(VIDEO_ID).to_pylist()
        if not ids:
            return
        chunks = table.column(FEATURES).chunks
        values = [c.flatten().to_numpy(zero_copy_only=False) for c in chunks]
        feats_NCT = (values[0] if len(values) == 1 else np.concatenate(values)).reshape(-1, C, T)
        durations_N = table.column(DURATION).to_numpy()
        for split, shard in out.items():
            pairs = [(i, place[v][1]) for i, v in enumerate(ids) if place[v][0] == split]
            if not pairs:
                continue
            src_M, dst_M = (np.asarray(x, np.int64) for x in zip(*pairs, strict=True))
            shard.durations_N[dst_M] = durations_N[src_M]
            if isinstance(shard.feats_NCT, torch.Tensor):
                rows_MCT = torch.from_numpy(feats_NCT[src_M]).to(device)
                shard.feats_NCT.index_copy_(0, torch.from_numpy(dst_M).to(device), rows_MCT)
            else:
                shard.feats_NCT[dst_M] = feats_NCT[src_M]
        found.append(ids)

    fragments = list(dataset.get_fragments())
    threads = max(1, min(len(fragments), os.cpu_count() or 1))
    with arrow_threads(threads), ThreadPoolExecutor(threads) as pool:
        list(pool.map(read, fragments))
    missing = sorted(set(place) - {v for ids in found for v in ids})
    if missing:
        raise TrainDataError(
            f"{len(missing)} videos are no longer in the features under "
            f"{training_set.features_uri} (e.g. {missing[:3]}): rerun on the current table"
        )
    return out
