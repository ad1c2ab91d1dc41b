"""MMAction2's own ``tools/train.py`` and ``tools/test.py``, run as a user runs them, train and
test BMNwActionCls with ``configs/mmaction2/`` on tiny ActivityNet-format data (csv_mean_100
feature CSVs and ``anet_anno_*.json``) and print AR@AN."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "configs/mmaction2/bmn_w_ac_2xb8-400x100-9e_activitynet-feature.py"
MMACTION = os.path.dirname(importlib.util.find_spec("mmaction").origin)
C, T = 16, 16  # feat_dim, temporal_dim: small, to keep CPU time small
TINY_MODEL = [f"model.feat_dim={C}", f"model.temporal_dim={T}", "model.num_samples=8"] + [
    f"model.hidden_dim_{d}={16}" for d in ("1d", "2d", "3d")
]
LABELS = ["Rock climbing", "Drinking beer", "Archery"]  # three of the 200 ActivityNet classes
SUBSETS = {"train": 8, "val": 3}  # videos per annotation file


def write_feature_csv(path, feats_TC: np.ndarray) -> None:
    """MMAction2's csv_mean_100 layout: a header of feature names, then one row per position."""
    header = ",".join(f"f{c}" for c in range(feats_TC.shape[1]))
    rows = [",".join(f"{v:.6f}" for v in row) for row in feats_TC]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def anet_data(tmp_path_factory):
    """``csv/v_*.csv`` and ``anet_anno_{train,val}.json``, one labelled segment per video."""
    root = tmp_path_factory.mktemp("anet")
    (root / "csv").mkdir()
    rng = np.random.default_rng(0)
    for subset, num_videos in SUBSETS.items():
        anno = {}
        for i in range(num_videos):
            video = f"v_{subset}{i:03d}"
            write_feature_csv(root / "csv" / f"{video}.csv", rng.random((T, C), dtype=np.float32))
            start = float(rng.uniform(0, 30))
            anno[video] = {
                "duration_second": 60.0, "duration_frame": 1800, "feature_frame": 1792,
                "fps": 30.0, "rfps": 30.0,
                "annotations": [{"segment": [start, start + float(rng.uniform(5, 25))],
                                 "label": LABELS[i % len(LABELS)]}],
            }  # fmt: skip
        (root / f"anet_anno_{subset}.json").write_text(json.dumps(anno))
    return root


def run_tool(script: str, *args: str, env: dict | None = None) -> str:
    """Runs ``mmaction/.mim/tools/<script>`` with this venv's python from the repository root;
    returns its output (stdout and stderr), failing the test with its tail on a non-zero exit."""
    cmd = [sys.executable, os.path.join(MMACTION, ".mim", "tools", script), CONFIG, *args]
    proc = subprocess.run(
        cmd, cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stdout[-4000:]}"
    return proc.stdout


def ar_an(output: str, mode: str) -> dict[str, float]:
    """The metrics of the last ``Epoch(<mode>)`` log line, e.g. ``auc: 58.0  AR@1: 0.0 ...``."""
    lines = [line for line in output.splitlines() if f"Epoch({mode})" in line and "AR@" in line]
    assert lines, f"no Epoch({mode}) AR@AN line in:\n{output[-4000:]}"
    return {k: float(v) for k, v in re.findall(r"(auc|AR@\d+): ([0-9.]+)", lines[-1])}


def test_drn_placeholder_is_installed_into_mmaction():
    """``make setup`` writes the placeholder where mmaction's localizers import it from, so
    ``import mmaction.models`` works without this project's shim."""
    drn = os.path.join(MMACTION, "models", "localizers", "drn", "drn.py")
    assert os.path.exists(drn)


def test_mmaction_train_and_test_tools(anet_data, tmp_path):
    work = tmp_path / "work"
    data = []
    for loader, subset in (("train", "train"), ("val", "val"), ("test", "val")):
        data += [
            f"{loader}_dataloader.dataset.ann_file={anet_data}/anet_anno_{subset}.json",
            f"{loader}_dataloader.dataset.data_prefix.video={anet_data}/csv",
            f"{loader}_dataloader.num_workers=0",
            f"{loader}_dataloader.persistent_workers=False",
        ]
    train_out = run_tool(
        "train.py", "--work-dir", str(work), "--cfg-options", *TINY_MODEL, *data,
        "train_cfg.max_epochs=1", "train_dataloader.batch_size=4",
        f"val_evaluator.dump_config.out={work}/val_results.json",
    )  # fmt: skip
    assert "loss_action_cls" in train_out  # the head trained on the packed labels
    checkpoint = work / "epoch_1.pth"
    assert checkpoint.exists()
    assert ar_an(train_out, "val")  # validation after the epoch

    # MMEngine's own checkpoints pickle its message hub; torch >= 2.6 loads them only with
    # weights_only off, which mmengine 0.10.7 does not ask for: torch's opt-in for a trusted file
    test_out = run_tool(
        "test.py", str(checkpoint), "--work-dir", str(work), "--cfg-options", *TINY_MODEL,
        *data, f"test_evaluator.dump_config.out={work}/test_results.json",
        env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"},
    )  # fmt: skip
    metrics = ar_an(test_out, "test")
    assert set(metrics) == {"auc", "AR@1", "AR@5", "AR@10", "AR@100"}
    assert 0.0 <= metrics["AR@1"] <= metrics["AR@5"] <= metrics["AR@10"] <= metrics["AR@100"] <= 1
    assert 0.0 <= metrics["auc"] <= 100.0
    results = json.loads((work / "test_results.json").read_text())["results"]
    assert sorted(results) == [f"val{i:03d}" for i in range(SUBSETS["val"])]
    for proposals in results.values():
        assert proposals and all(0 <= p["label_id"] < 200 for p in proposals)


def test_segment_labels_follow_the_label_map_and_name_unknown_labels():
    from core.mmaction import GenerateSegmentLabels

    label_map = os.path.join(REPO, "configs", "mmaction2", "activitynet_label_map.txt")
    with open(label_map) as f:
        names = [line.strip() for line in f if line.strip()]
    assert len(names) == len(set(names)) == 200
    transform = GenerateSegmentLabels(classes=label_map)
    annotations = [{"segment": [0, 1], "label": "Zumba"}, {"segment": [2, 3], "label": "BMX"}]
    labels = transform({"annotations": annotations})["gt_labels"]
    assert labels.dtype == np.int64 and labels.tolist() == [
        names.index("Zumba"),
        names.index("BMX"),
    ]
    assert GenerateSegmentLabels(classes=["a", "b"])({"annotations": []})["gt_labels"].shape == (0,)
    with pytest.raises(ValueError, match=r"v_x has label\(s\) \['Juggling chainsaws'\]"):
        transform(
            {
                "video_name": "v_x",
                "annotations": [{"segment": [0, 1], "label": "Juggling chainsaws"}],
            }
        )


def test_model_without_labels_says_which_transform_to_add():
    """MMAction2's own ActivityNet pipeline packs no labels: the model must say what to add."""
    from mmaction.datasets.transforms import PackLocalizationInputs

    from core.models import BMNwActionCls

    model = BMNwActionCls(
        temporal_dim=T, boundary_ratio=0.5, num_samples=8, num_samples_per_bin=3, feat_dim=C,
        soft_nms_alpha=0.4, soft_nms_low_threshold=0.5, soft_nms_high_threshold=0.9,
        post_process_top_k=100, hidden_dim_1d=16, hidden_dim_2d=16, hidden_dim_3d=16,
        num_action_classes=200,
    )  # fmt: skip
    packed = PackLocalizationInputs(keys=("gt_bbox",)).transform(
        {"raw_feature": np.zeros((C, T), np.float32), "gt_bbox": np.array([[0.1, 0.5]])}
    )
    with pytest.raises(ValueError, match="GenerateSegmentLabels"):
        model([packed["inputs"]], [packed["data_samples"]], mode="loss")
