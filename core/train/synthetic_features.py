"""Synthetic features and annotations for tests and benchmarks (no videos needed).

Each video gets 1-3 random segments of random classes over Gaussian noise of scale 1. With
``signal > 0`` the features locate them: channel 0 is ``signal`` inside a segment, channels 1
and 2 bump at its start and end. With ``class_signal > 0`` (default: ``signal / 2``) they also
tell the class apart: inside a segment of class k every channel gets ``class_signal`` times
class k's prototype (a fixed random N(0, 1) vector over the channels), modulated over the
segment by a class-specific number of cycles (``0.75 + 0.25 cos(2 pi f_k u)``, u from 0 to 1
over the segment), so the class shows only through a pattern spread across all channels,
under noise, as in real features. With both 0 the features carry nothing. Written as an
extract-like output (``OUT/features/part-*.parquet`` via :func:`core.io.commits.commit_batch`)
with ActivityNet v1.3 annotations (``training`` / ``validation`` subsets).

Shape legend: N videos, C channels, T positions, G segments, K classes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from core import storage
from core.io import commits, tables

RUN_ID = "synthetic"


def random_segments(rng: np.random.Generator, duration: float) -> np.ndarray:
    """1-3 segments (G, 2) in seconds, each 5-50 % of the video."""
    n = int(rng.integers(1, 4))
    length_G = rng.uniform(0.05, 0.5, n) * duration
    start_G = rng.uniform(0, 1, n) * (duration - length_G)
    return np.stack([start_G, start_G + length_G], axis=1)


def class_patterns(num_classes: int, C: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each class's prototype over the channels (K, C) and its cycles per segment (K,)."""
    rng = np.random.default_rng([seed, 1])
    return rng.standard_normal((num_classes, C)).astype(np.float32), rng.uniform(
        0.5, 3.0, num_classes
    )


def encode(
    segments_G2: np.ndarray, labels_G: np.ndarray, duration: float, C: int, T: int,
    signal: float, rng: np.random.Generator, class_signal: float = 0.0,
    patterns: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:  # fmt: skip
    """feats_CT: noise plus the segments' boundary and class signals (module docstring)."""
    feats_CT = rng.standard_normal((C, T)).astype(np.float32)
    centre_T = (np.arange(T) + 0.5) / T * duration
    for (start, end), label in zip(segments_G2, labels_G, strict=True):
        inside_T = (centre_T >= start) & (centre_T < end)
        if signal > 0:
            start_T, end_T = (
                np.exp(-0.5 * ((centre_T - t) * T / duration) ** 2) for t in (start, end)
            )
            for channel, add_T in ((0, inside_T), (1, start_T), (2, end_T)):
                if channel < C:  # tiny C: fewer channels carry the signal
                    feats_CT[channel] += signal * add_T
        if class_signal > 0 and patterns is not None:
            proto_KC, cycles_K = patterns
            u_T = (centre_T - start) / max(end - start, 1e-9)
            wave_T = 0.75 + 0.25 * np.cos(2 * np.pi * cycles_K[label] * u_T)
            feats_CT += class_signal * proto_KC[label][:, None] * (wave_T * inside_T)[None]
    return feats_CT


def synthetic_corpus(
    num_videos: int, C: int, T: int, num_classes: int, seed: int = 0, signal: float = 3.0,
    val_fraction: float = 0.25, class_signal: float | None = None,
) -> tuple[pa.Table, dict]:  # fmt: skip
    """A features table and ActivityNet v1.3 annotations of N videos (module docstring)."""
    rng = np.random.default_rng(seed)
    class_signal = signal / 2 if class_signal is None else class_signal
    patterns = class_patterns(num_classes, C, seed)
    classes = [f"action_{k}" for k in range(num_classes)]
    ids, feats, durations, database = [], [], [], {}
    num_val = max(1, round(num_videos * val_fraction))
    for i in range(num_videos):
        vid = f"vid_{i:06d}"
        duration = float(rng.uniform(20, 120))
        segments_G2 = random_segments(rng, duration)
        labels_G = rng.integers(0, num_classes, len(segments_G2))
        feats.append(
            encode(segments_G2, labels_G, duration, C, T, signal, rng, class_signal, patterns)
        )
        ids.append(vid)
        durations.append(duration)
        database[vid] = {
            "subset": "validation" if i < num_val else "training",
            "duration": duration,
            "annotations": [
                {"segment": [float(s), float(e)], "label": classes[k]}
                for (s, e), k in zip(segments_G2, labels_G, strict=True)
            ],
        }
    feats_NCT = np.stack(feats)
    table = features_table(ids, feats_NCT, np.asarray(durations))
    return table, {"version": "synthetic-features", "classes": classes, "database": database}


def features_table(ids: list[str], feats_NCT: np.ndarray, durations_N: np.ndarray) -> pa.Table:
    """Features table rows for features already in memory (fps 30, random extractor)."""
    N, C, T = feats_NCT.shape
    flat = pa.FixedSizeListArray.from_arrays(pa.array(feats_NCT.reshape(-1), pa.float32()), C * T)
    return pa.table(
        {
            tables.VIDEO_ID: pa.array(ids, pa.string()),
            tables.URI: pa.array([f"synthetic://{v}" for v in ids], pa.string()),
            "features": flat,
            "C": pa.array([C] * N, pa.int32()),
            "T": pa.array([T] * N, pa.int32()),
            "video_duration_s": pa.array(durations_N, pa.float64()),
            "feature_span_s": pa.array(durations_N, pa.float64()),
            "fps": pa.array([30.0] * N, pa.float64()),
            "num_frames": pa.array(np.round(durations_N * 30).astype(np.int64), pa.int64()),
            "num_snippets": pa.array([T] * N, pa.int32()),
            "num_decode_errors": pa.array([0] * N, pa.int32()),
            "extractor": pa.array(["synthetic"] * N, pa.string()),
            "extractor_checkpoint": pa.array(["random"] * N, pa.string()),
            tables.RUN_ID: pa.array([RUN_ID] * N, pa.string()),
        },
        schema=tables.features_schema(C, T),
    )


def write_table(
    output_uri: str, table: pa.Table, annotations: dict, rows_per_file: int = 256
) -> str:
    """Writes OUT/features/ (committed batches) and OUT/annotations.json; returns the latter."""
    for start in range(0, table.num_rows, rows_per_file):
        part = table.slice(start, rows_per_file)
        ids = part.column(tables.VIDEO_ID).to_pylist()
        commits.commit_batch(output_uri, RUN_ID, None, {"features": part}, ids)
    anno_uri = storage.join(output_uri, "annotations.json")
    storage.write_json(anno_uri, annotations)
    return anno_uri


def write_synthetic(
    output_uri: str, num_videos: int, C: int, T: int, num_classes: int, seed: int = 0,
    signal: float = 3.0, rows_per_file: int = 256,
) -> str:  # fmt: skip
    """:func:`synthetic_corpus` written by :func:`write_table`; returns the annotations URI."""
    table, annotations = synthetic_corpus(num_videos, C, T, num_classes, seed, signal)
    return write_table(output_uri, table, annotations, rows_per_file)
