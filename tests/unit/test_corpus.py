"""Planning, class table, annotations and rendering of the synthetic corpus (no storage)."""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import re

import av
import numpy as np
import pytest

from core import corpus
from core.corpus import CLASS_TABLE, MAX_CLASSES, CorpusArgumentError

pytestmark = pytest.mark.unit

SMALL = dict(
    min_duration=1.0, max_duration=3.0, resolutions=[(96, 64), (64, 48)], fps_choices=[15, 25]
)


def test_class_names_are_descriptive_unique_and_stable():
    names = corpus.class_names(MAX_CLASSES)
    assert names[0] == "bouncing_red_circle"
    assert len(set(names)) == MAX_CLASSES
    assert all(re.fullmatch(r"[a-z]+_[a-z]+_[a-z]+", name) for name in names)
    assert corpus.class_names(5) == names[:5]  # class k is the same whatever K


def test_any_two_classes_differ_in_at_least_two_attributes():
    for a, b in itertools.combinations(CLASS_TABLE, 2):
        same = (a.shape == b.shape) + (a.color == b.color) + (a.motion == b.motion)
        assert same <= 1, (a.name, b.name)


@pytest.mark.parametrize("num_classes", [0, MAX_CLASSES + 1])
def test_class_names_rejects_out_of_table(num_classes):
    with pytest.raises(CorpusArgumentError, match="num_classes"):
        corpus.class_names(num_classes)


def test_same_seed_same_plan_and_other_seed_other_plan():
    plan = corpus.plan_corpus(30, 5, 7, **SMALL)
    assert plan == corpus.plan_corpus(30, 5, 7, **SMALL)
    assert plan != corpus.plan_corpus(30, 5, 8, **SMALL)


def test_video_i_depends_on_seed_and_index_only():
    short = corpus.plan_corpus(5, 5, 3, **SMALL)
    long = corpus.plan_corpus(40, 5, 3, **SMALL)
    for a, b in zip(short, long[:5], strict=True):
        assert dataclasses.replace(a, subset="x") == dataclasses.replace(b, subset="x")


def test_plan_respects_bounds():
    num_classes = 6
    plan = corpus.plan_corpus(300, num_classes, 0, **SMALL)
    assert [s.video_id for s in plan] == [f"vid_{i:06d}" for i in range(300)]
    counts = set()
    overlaps = 0
    for spec in plan:
        assert (spec.width, spec.height) in SMALL["resolutions"]
        assert spec.fps in SMALL["fps_choices"]
        half_frame = 0.5 / spec.fps
        assert 1.0 - half_frame <= spec.duration <= 3.0 + half_frame
        assert len(spec.instances) <= 3
        counts.add(len(spec.instances))
        for inst in spec.instances:
            assert 0 <= inst.label_id < num_classes
            assert 0 <= inst.start_frame < inst.end_frame <= spec.num_frames
            length = (inst.end_frame - inst.start_frame) / spec.num_frames
            assert 0.1 - 1 / spec.num_frames <= length <= 0.6 + 1 / spec.num_frames
            start, end = inst.segment(spec.fps)
            assert 0.0 <= start < end <= spec.duration
        for a, b in itertools.combinations(spec.instances, 2):
            if a.start_frame < b.end_frame and b.start_frame < a.end_frame:
                overlaps += 1
                assert a.label_id != b.label_id  # simultaneous actions are of different classes
    assert counts == {0, 1, 2, 3}
    assert 0 < overlaps < 100  # overlaps happen, occasionally
    labels = {inst.label_id for spec in plan for inst in spec.instances}
    assert labels == set(range(num_classes))


@pytest.mark.parametrize(
    ("num_videos", "val_fraction", "expected_val"),
    [(10, 0.2, 2), (4, 0.2, 1), (7, 0.0, 0), (1, 0.9, 0), (3, 0.99, 2)],
)
def test_validation_split_has_exact_size_and_keeps_training(num_videos, val_fraction, expected_val):
    plan = corpus.plan_corpus(num_videos, 3, 1, val_fraction=val_fraction, **SMALL)
    subsets = [s.subset for s in plan]
    assert subsets.count("validation") == expected_val
    assert subsets.count("training") == num_videos - expected_val


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(num_videos=0), "num_videos"),
        (dict(num_classes=0), "num_classes"),
        (dict(num_classes=MAX_CLASSES + 1), "num_classes"),
        (dict(seed=-1), "seed"),
        (dict(val_fraction=1.0), "val_fraction"),
        (dict(val_fraction=-0.1), "val_fraction"),
        (dict(min_duration=5.0, max_duration=2.0), "must not exceed max_duration"),
        (dict(min_duration=0.1), "min_duration"),
        (dict(min_duration=float("nan")), "min_duration"),
        (dict(max_duration=1e9), "max_duration"),
        (dict(resolutions=[(97, 64)]), "even"),
        (dict(resolutions=[]), "resolutions"),
        (dict(fps_choices=[0.0]), "fps"),
        (dict(fps_choices=[]), "fps"),
    ],
)
def test_plan_rejects_bad_arguments(overrides, message):
    kwargs = dict(num_videos=3, num_classes=3, seed=0, **SMALL) | overrides
    with pytest.raises(CorpusArgumentError, match=message):
        corpus.plan_corpus(**kwargs)


def test_annotations_are_activitynet_and_deterministic():
    plan = corpus.plan_corpus(12, 4, 5, **SMALL)
    anno = corpus.annotations_json(plan, 4)
    assert json.dumps(anno, sort_keys=True) == json.dumps(
        corpus.annotations_json(corpus.plan_corpus(12, 4, 5, **SMALL), 4), sort_keys=True
    )
    assert anno["classes"] == corpus.class_names(4)
    assert set(anno["database"]) == {s.video_id for s in plan}
    for spec in plan:
        entry = anno["database"][spec.video_id]
        assert entry["subset"] in ("training", "validation")
        assert entry["resolution"] == f"{spec.width}x{spec.height}"
        assert abs(entry["duration"] - spec.num_frames / spec.fps) < 1e-5
        assert len(entry["annotations"]) == len(spec.instances)
        for item in entry["annotations"]:
            start, end = item["segment"]
            assert 0.0 <= start < end <= entry["duration"]
            assert item["label"] in anno["classes"]


def test_manifest_has_one_row_per_video_with_full_uri():
    plan = corpus.plan_corpus(3, 2, 0, **SMALL)
    rows = list(csv.DictReader(io.StringIO(corpus.manifest_csv(plan, "s3://bucket/corpus"))))
    assert list(rows[0]) == list(corpus.MANIFEST_COLUMNS)
    assert [r["uri"] for r in rows] == [
        f"s3://bucket/corpus/videos/vid_{i:06d}.mp4" for i in range(3)
    ]
    assert [int(r["num_frames"]) for r in rows] == [s.num_frames for s in plan]


def _spec_with(label_id: int, start: int, end: int, num_frames: int = 20) -> corpus.VideoSpec:
    base = corpus.plan_corpus(1, MAX_CLASSES, 0, **SMALL)[0]
    inst = corpus.ActionInstance(
        label_id=label_id,
        label=CLASS_TABLE[label_id].name,
        start_frame=start,
        end_frame=end,
        anchor_x=0.5,
        anchor_y=0.5,
        size=0.12,
        speed=1.0,
        phase=0.0,
        direction=1,
    )
    return dataclasses.replace(
        base, width=96, height=64, fps=10.0, num_frames=num_frames, instances=(inst,)
    )


@pytest.mark.parametrize("label_id", range(MAX_CLASSES))
def test_shape_appears_in_its_colour_only_while_the_action_lasts(label_id):
    spec = _spec_with(label_id, start=5, end=15)
    rgb = np.array(CLASS_TABLE[label_id].rgb)
    frames = list(corpus.render_frames(spec))
    assert len(frames) == 20
    assert all(f.shape == (64, 96, 3) and f.dtype == np.uint8 for f in frames)
    for i, frame_HW3 in enumerate(frames):
        near_P = np.abs(frame_HW3.astype(int) - rgb).max(axis=-1) < 30
        if 5 <= i < 15:
            assert near_P.sum() >= 15, i
        else:
            assert near_P.sum() == 0, i


def test_background_moves():
    spec = dataclasses.replace(_spec_with(0, 0, 1), instances=())
    frames = list(corpus.render_frames(spec))
    assert np.abs(frames[0].astype(int) - frames[10].astype(int)).mean() > 2.0
    assert frames[0].std() > 5.0  # textured, not flat


def test_write_video_is_h264_with_exact_frames(tmp_path):
    spec = dataclasses.replace(_spec_with(2, 3, 9, num_frames=12), fps=25.0)
    path = str(tmp_path / "v.mp4")
    corpus.write_video(spec, path, threads=1)
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (96, 64)
        assert sum(1 for _ in container.decode(stream)) == 12
        assert abs(container.duration / av.time_base - spec.duration) < 0.1
