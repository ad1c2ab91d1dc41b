"""Training the detect job's models (core.detect.train, jobs.train_detect) on a tiny people
corpus: the losses fall, and the checkpoints load into the job's stages weight for weight."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from core import config
from core.corpus.people import make_people_corpus
from core.detect import stages
from core.detect.config import DetectConfig
from core.detect.train import TrainDetectConfig, fit_action_model, fit_detector
from core.detect.train_data import load_samples
from core.io.checkpoint import load_state_dict_from
from core.pipeline.inputs import list_inputs

REPO = pathlib.Path(__file__).resolve().parents[2]
TRAIN_CONFIG = str(REPO / "configs" / "detect" / "train_demo.py")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, str]:
    return make_people_corpus(str(tmp_path_factory.mktemp("people")), num_videos=3, seed=5)


@pytest.fixture(scope="module")
def setup(corpus):
    cfg, _ = config.load(TRAIN_CONFIG, TrainDetectConfig)
    detect_cfg, _ = config.load(cfg.detect_config, DetectConfig)
    videos = list_inputs(corpus["manifest"])
    samples = load_samples(
        videos, corpus["annotations"], detect_cfg.sampling, detect_cfg.detector.short_side
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.num_threads or threads)  # as the job trains
    yield cfg, detect_cfg, samples
    torch.set_num_threads(threads)


def test_samples_are_what_the_job_decodes(setup):
    cfg, detect_cfg, samples = setup
    assert len(samples) == 9  # 3 videos x whole seconds 1, 2, 3 of 4 s
    s = samples[0]
    assert s.keyframe_HW3.shape == (120, 160, 3) and s.keyframe_HW3.dtype == np.uint8
    assert s.clip_Thw3.shape == (detect_cfg.sampling.clip_len, 96, 128, 3)
    assert all(len(a) == 1 for x in samples for a in x.actions)  # one action per person
    assert {a[0] for x in samples for a in x.actions} <= {1, 7, 12, 14}


def first_last(losses: list[float], k: int = 4) -> tuple[float, float]:
    return float(np.mean(losses[:k])), float(np.mean(losses[-k:]))


def test_detector_loss_falls(setup):
    cfg, detect_cfg, samples = setup
    fit = config.build(type(cfg.detector), {**config.to_dict(cfg.detector), "iterations": 20,
                                            "batch_size": 3, "warmup": 2, "lr": 3e-3,
                                            "max_seconds": 1e6})  # fmt: skip
    result = fit_detector(detect_cfg.detector, fit, samples[:3], seed=0)
    first, last = first_last(result.losses)
    assert result.iterations == 20 and not result.stopped_early
    assert last < 0.8 * first, result.losses


def test_action_loss_falls(setup):
    cfg, detect_cfg, samples = setup
    fit = config.build(type(cfg.action), {**config.to_dict(cfg.action), "iterations": 20,
                                          "batch_size": 4, "warmup": 2, "lr": 3e-3,
                                          "max_seconds": 1e6})  # fmt: skip
    result = fit_action_model(detect_cfg.action, fit, samples[:4], seed=0)
    first, last = first_last(result.losses)
    assert last < 0.8 * first, result.losses


def test_job_writes_checkpoints_that_load_into_detect(corpus, tmp_path):
    out = tmp_path / "models"
    cmd = [sys.executable, "-m", "jobs.train_detect", "--config", TRAIN_CONFIG,
           "--input", corpus["manifest"], "--annotations", corpus["annotations"],
           "--output", str(out), "--cfg-options", "detector.iterations=3",
           "action.iterations=3"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "detector.checkpoint=" in proc.stdout
    history = json.loads((out / "history.json").read_text())
    assert history["num_keyframes"] == 9 and len(history["action"]["losses"]) == 3
    cfg, _ = config.load(str(REPO / "configs" / "detect" / "demo.py"), DetectConfig,
                         {"detector.checkpoint": str(out / "detector.pth"),
                          "action.checkpoint": str(out / "action.pth")})  # fmt: skip
    persons = stages.PersonBoxes(cfg)
    actions = stages.ActionScores(cfg, [1, 7, 12, 14])
    for model, name in ((persons.detector, "detector"), (actions.model, "action")):
        saved, sha = load_state_dict_from(str(out / f"{name}.pth"))
        assert model.sha256 == sha == history[name]["sha256"]
        loaded = model.model.state_dict()
        assert set(saved) == set(loaded)  # every weight (the load is not strict)
        for k, v in saved.items():
            assert torch.equal(loaded[k].cpu(), v), k


def test_ground_truth_of_other_videos_exits_2(corpus, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("nobody,1,0.1,0.1,0.5,0.9,14,0\n")
    cmd = [sys.executable, "-m", "jobs.train_detect", "--config", TRAIN_CONFIG,
           "--input", corpus["manifest"], "--annotations", str(other),
           "--output", str(tmp_path / "o")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "none of the 3 videos has ground truth" in proc.stderr
