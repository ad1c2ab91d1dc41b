"""core.eval.ava against MMAction2's ``ava_eval`` on random AVA CSVs, plus known answers."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest

from core.eval import ava

CLASSES = {1: "bend", 3: "crouch", 4: "dance", 8: "lie", 11: "sit", 12: "stand", 14: "walk"}


def random_case(rng: np.random.Generator, frames: int, dets_per_frame: int):
    """Ground truth with person ids (an 8th column), near-duplicate and jittered detections,
    classes outside the label map, score ties and frames without detections."""
    vids = np.array([f"vid{i}" for i in range(max(1, frames // 10))], dtype=object)
    gt_rows, det_rows = [], []
    for f in range(frames):
        vid, ts = vids[f % len(vids)], 902 + f // len(vids)
        n_people = rng.integers(1, 4)
        for p in range(n_people):
            x1, y1 = rng.uniform(0, 0.6, 2)
            box = np.array([x1, y1, x1 + rng.uniform(0.1, 0.4), y1 + rng.uniform(0.1, 0.4)])
            for a in rng.choice(
                [1, 3, 4, 8, 11, 12, 14, 2], size=rng.integers(1, 3), replace=False
            ):
                gt_rows.append((vid, ts, *np.round(box, 3), int(a), p))
        if f % 7 == 3:
            continue  # a frame with ground truth and no detections
        for _ in range(dets_per_frame):
            src = gt_rows[-rng.integers(1, 4)]
            jit = np.round(np.asarray(src[2:6]) + rng.normal(0, 0.05, 4), 3)
            jit = np.concatenate([np.minimum(jit[:2], jit[2:]), np.maximum(jit[:2], jit[2:])])
            score = round(float(rng.choice([0.5, rng.uniform()])), 3)  # many ties at 0.5
            label = src[6] if rng.uniform() < 0.6 else rng.choice([1, 3, 4, 8, 11, 12, 14, 5])
            det_rows.append((vid, ts, *jit, int(label), score))
    det_rows.append(("vid_unknown", 902, 0.1, 0.1, 0.5, 0.5, 1, 0.9))  # a frame without gt
    return gt_rows, det_rows


def write_csv(path, rows) -> None:
    path.write_text("".join(",".join(str(v) for v in r) + "\n" for r in rows))


class SerialPool:
    """``multiprocessing.Pool`` stand-in: ava_eval asks for 32 processes; the numbers are the
    same computed in this one."""

    def __init__(self, *args) -> None:
        pass

    def map(self, fn, items):
        return [fn(x) for x in items]


@pytest.fixture(autouse=True)
def serial_ava_eval(monkeypatch):
    from mmaction.evaluation.functional import ava_utils

    monkeypatch.setattr(ava_utils.multiprocessing, "Pool", SerialPool)


def mmaction_eval(tmp_path, gt_rows, det_rows, exclusions) -> tuple[float, dict[int, float]]:
    from mmaction.evaluation.functional import ava_utils

    write_csv(tmp_path / "gt.csv", gt_rows)
    write_csv(tmp_path / "det.csv", det_rows)
    write_csv(tmp_path / "excl.csv", exclusions)
    ava.write_label_map_pbtxt(str(tmp_path / "labels.pbtxt"), CLASSES)
    aps: dict[int, float] = {}
    orig = ava_utils.metrics.compute_average_precision
    calls = []

    def spy(precision, recall):
        out = orig(precision, recall)
        calls.append(out)
        return out

    ava_utils.metrics.compute_average_precision = spy
    try:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            result = ava_utils.ava_eval(
                str(tmp_path / "det.csv"),
                "mAP",
                str(tmp_path / "labels.pbtxt"),
                str(tmp_path / "gt.csv"),
                str(tmp_path / "excl.csv"),
                verbose=False,
            )
    finally:
        ava_utils.metrics.compute_average_precision = orig
    for line in out.getvalue().splitlines():
        if line.startswith("Index: "):
            cid = int(line.split(",")[0].split()[1])
            aps[cid] = None  # filled from the spy below, in the printed order
    for cid, ap in zip(aps, calls, strict=True):
        aps[cid] = ap
    return result["overall"], aps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_mmaction_ava_eval(tmp_path, seed):
    rng = np.random.default_rng(seed)
    gt_rows, det_rows = random_case(rng, frames=60, dets_per_frame=12)
    exclusions = [(gt_rows[0][0], gt_rows[0][1]), ("vid1", 905)]
    overall, aps = mmaction_eval(tmp_path, gt_rows, det_rows, exclusions)

    result = ava.evaluate_detections(
        str(tmp_path / "det.csv"),
        str(tmp_path / "gt.csv"),
        str(tmp_path / "labels.pbtxt"),
        str(tmp_path / "excl.csv"),
    )
    assert set(result.ap_by_class) == set(aps)
    for cid, ap in aps.items():
        if math.isnan(ap):
            assert math.isnan(result.ap_by_class[cid])
        else:
            assert result.ap_by_class[cid] == ap, cid  # exactly, not approximately
    assert result.frame_map == pytest.approx(overall, rel=1e-12, abs=0)
    assert 0.1 < result.frame_map < 0.9  # the case is neither trivial nor hopeless


def test_parquet_input_equals_csv(tmp_path):
    """The same detections read from Parquet (float32 boxes and scores) give the same AP."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(5)
    gt_rows, det_rows = random_case(rng, frames=30, dets_per_frame=8)
    write_csv(tmp_path / "gt.csv", gt_rows)
    ava.write_label_map_pbtxt(str(tmp_path / "labels.pbtxt"), CLASSES)
    cols = list(zip(*det_rows, strict=True))
    table = pa.table(
        {
            "video_id": pa.array(cols[0], pa.string()),
            "timestamp": pa.array(cols[1], pa.float64()),
            **{
                k: pa.array(cols[2 + i], pa.float32())
                for i, k in enumerate(["x1", "y1", "x2", "y2"])
            },
            "action_id": pa.array(cols[6], pa.int32()),
            "score": pa.array(cols[7], pa.float32()),
        }
    )
    (tmp_path / "dets").mkdir()
    pq.write_table(table, tmp_path / "dets" / "part-0.parquet")
    det = ava.read_detections(str(tmp_path / "dets"))
    ava.write_ava_csv(str(tmp_path / "det32.csv"), det)
    from_parquet = ava.evaluate_detections(
        str(tmp_path / "dets"), str(tmp_path / "gt.csv"), str(tmp_path / "labels.pbtxt")
    )
    from mmaction.evaluation.functional import ava_utils

    with contextlib.redirect_stdout(io.StringIO()):
        ref = ava_utils.ava_eval(
            str(tmp_path / "det32.csv"), "mAP", str(tmp_path / "labels.pbtxt"),
            str(tmp_path / "gt.csv"), None, verbose=False,
        )  # fmt: skip
    assert from_parquet.frame_map == pytest.approx(ref["overall"], rel=1e-12, abs=0)


def test_known_answer_and_greedy_quirk():
    """Two gt boxes; the top detection overlaps both, the second overlaps only the first best:
    MMAction2's matching gives the second detection no fallback, so AP = 0.5 not 1."""
    gt = ava.AVABoxes(
        np.array(["v", "v"], dtype=object),
        np.array([1.0, 1.0]),
        np.array([[0, 0, 0.5, 0.5], [0.1, 0, 0.6, 0.5]], np.float32),
        np.array([1, 1]),
        np.ones(2),
    )
    det = ava.AVABoxes(
        np.array(["v", "v"], dtype=object),
        np.array([1.0, 1.0]),
        np.array([[0, 0, 0.5, 0.5], [0.02, 0, 0.52, 0.5]], np.float32),
        np.array([1, 1]),
        np.array([0.9, 0.8]),
    )
    result = ava.frame_map(gt, det, {1: "a", 2: "b"})
    assert result.ap_by_class == {1: 0.5}
    assert result.frame_map == 0.5
    assert result.metrics()["per_class_AP"] == {"a": 0.5, "b": None}


def test_snap_to_seconds_keeps_the_nearest_keyframe():
    det = ava.AVABoxes(
        np.array(["v", "v", "v", "w"], dtype=object),
        np.array([0.96, 1.28, 1.92, 3.4]),
        np.zeros((4, 4), np.float32),
        np.array([1, 1, 1, 1]),
        np.ones(4),
    )
    snapped = ava.snap_to_seconds(det, tolerance=0.5)
    assert snapped.timestamp.tolist() == [1.0, 2.0, 3.0]
    assert snapped.video_id.tolist() == ["v", "v", "w"]


def test_label_map_formats(tmp_path):
    (tmp_path / "m.txt").write_text("1: bend/bow (at the waist)\n3: crouch/kneel\n")
    assert ava.read_label_map(str(tmp_path / "m.txt")) == {
        1: "bend/bow (at the waist)",
        3: "crouch/kneel",
    }
    ava.write_label_map_pbtxt(str(tmp_path / "m.pbtxt"), {1: "a", 3: "b"})
    assert ava.read_label_map(str(tmp_path / "m.pbtxt")) == {1: "a", 3: "b"}
