"""core.train.loop / final_eval / trainer without Ray: learning, resume equality, exports, configs."""

from __future__ import annotations

import os

import pytest
import torch

from core import config
from core.eval.annotations import parse_annotations
from core.io.checkpoint import load_checkpoint
from core.models.localizer import load_localizer
from core.train import data, final_eval, loop, synthetic_features
from core.train.config import DataSection, OptimSection, TrainConfig, validate_train_config
from core.train.evaluation import BackgroundValidation
from core.train.trainer import resolve_model_cfg
from tests.unit.samples import TINY_MODEL, C, K, T

pytestmark = pytest.mark.unit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = TINY_MODEL


@pytest.fixture(scope="module")
def corpus():
    """Features that encode the ground truth (64 videos: 48 train, 16 val), in memory."""
    table, annos = synthetic_features.synthetic_corpus(64, C, T, K, seed=0, signal=3.0)
    parsed = parse_annotations(annos)
    train, val = data.split_annotations(parsed, DataSection())
    class_of = {name: i for i, name in enumerate(annos["classes"])}
    index = table.select(["video_id", data.DURATION])
    gt = {split: data.match_ground_truth(a, index, class_of)[0]
          for split, a in (("train", train), ("val", val))}  # fmt: skip
    shards = {s: data.collect_shard([data.join_ground_truth(table, gt[s])], C, T) for s in gt}
    ts = data.TrainingSet("unused", C, T, annos["classes"], gt, val)
    return ts, shards


def cfg(**kw) -> TrainConfig:
    kw.setdefault("optim", OptimSection(lr=2e-3))
    return TrainConfig(model=dict(MODEL), batch_size=8, **kw)


def train(state, shard, c: TrainConfig, until: int) -> None:
    rows = loop.to_device(shard, state.model, "cpu")
    while state.epoch < until:
        loop.run_epoch(state, state.model, rows, c, rank=0, world=1)
        state.scheduler.step()
        state.epoch += 1


def test_training_learns_the_encoded_segments(corpus):
    ts, shards = corpus
    c = cfg()
    state = loop.new_train_state(MODEL, c, "cpu")
    before = loop.validate(state, shards["val"], ts, "float32", 32)
    rows = loop.to_device(shards["train"], state.model, "cpu")
    first = loop.run_epoch(state, state.model, rows, c, rank=0, world=1)
    state.epoch = 1
    train(state, shards["train"], c, until=12)
    last = loop.run_epoch(state, state.model, rows, c, rank=0, world=1)
    after = loop.validate(state, shards["val"], ts, "float32", 32)
    assert last["loss"] < 0.7 * first["loss"]
    assert after["AUC"] > before["AUC"] + 20 and after["AUC"] > 45
    assert after["mAP@0.5"] > 0.25 > before["mAP@0.5"]
    assert state.model.training  # validation put it back


@pytest.mark.parametrize("capturable", [False, True], ids=["float_lr", "tensor_lr"])
def test_restored_state_continues_exactly_like_an_uninterrupted_run(corpus, tmp_path, capturable):
    """Also with the captured step's optimizer (fused Adam, the learning rate a tensor that
    the schedule updates in place): the restored rate is again such a tensor."""
    _, shards = corpus
    c = cfg(optim=OptimSection(lr=2e-3, milestones=[2]))
    straight = loop.new_train_state(MODEL, c, "cpu", capturable)
    lr_tensor = straight.optimizer.param_groups[0]["lr"]
    train(straight, shards["train"], c, until=3)
    if capturable:  # updated in place
        assert straight.optimizer.param_groups[0]["lr"] is lr_tensor
    interrupted = loop.new_train_state(MODEL, c, "cpu", capturable)
    train(interrupted, shards["train"], c, until=1)
    loop.save_state_file(interrupted, str(tmp_path))
    torch.manual_seed(123)  # whatever the process did before does not matter
    resumed = loop.new_train_state(MODEL, c, "cpu", capturable)
    loop.restore_state(resumed, loop.load_state_file(str(tmp_path)))
    assert resumed.epoch == 1
    assert torch.is_tensor(resumed.optimizer.param_groups[0]["lr"]) == capturable
    train(resumed, shards["train"], c, until=3)
    assert loop.learning_rate(resumed.optimizer) == pytest.approx(2e-4)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_a_tensor_rate_checkpoint_resumes_an_eager_run(corpus, tmp_path):
    """A train state saved by the captured step (its rate a tensor) continues on a device
    where the step runs eagerly (a float rate), and the other way round."""
    _, shards = corpus
    c = cfg(optim=OptimSection(lr=2e-3, milestones=[1]))
    for saved_with, resumed_with in ((True, False), (False, True)):
        state = loop.new_train_state(MODEL, c, "cpu", saved_with)
        train(state, shards["train"], c, until=1)
        loop.save_state_file(state, str(tmp_path))
        resumed = loop.new_train_state(MODEL, c, "cpu", resumed_with)
        loop.restore_state(resumed, loop.load_state_file(str(tmp_path)))
        assert torch.is_tensor(resumed.optimizer.param_groups[0]["lr"]) == resumed_with
        assert loop.learning_rate(resumed.optimizer) == pytest.approx(2e-4)
        train(resumed, shards["train"], c, until=2)


def test_export_best_loads_as_a_localizer(corpus, tmp_path):
    ts, shards = corpus
    state = loop.new_train_state(MODEL, cfg(), "cpu")
    state.epoch = 4
    uri = str(tmp_path / "best.pth")
    sha = final_eval.export_best(loop.state_to_save(state), MODEL, ts.class_names, uri, seed=0)
    obj, sha_read = load_checkpoint(uri)
    assert sha == sha_read and obj["meta"]["epoch"] == 4
    localizer = load_localizer({}, uri)
    assert localizer.class_names == ts.class_names
    props, labels, valid = localizer.propose(shards["val"].feats_NCT[:2], [60.0, 80.0])
    assert valid.any() and props[valid][:, 1].max() <= 80.0 + 1e-6


def test_training_curves_png(tmp_path):
    history = [dict(epoch=e, loss=3.0 / e, tem=1.0 / e, pem_reg=0.1, pem_cls=0.3, action_cls=1.0,
                    AUC=20.0 * e, mAP=0.1 * e) for e in (1, 2, 3)]  # fmt: skip
    uri = str(tmp_path / "curves.png")
    final_eval.write_training_curves(history, uri)
    with open(uri, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_resolve_model_cfg_checks_the_data():
    ts = data.TrainingSet("x", C, T, ["a", "b"], {}, {})
    auto = resolve_model_cfg({**MODEL, "num_action_classes": None}, ts)
    assert auto["num_action_classes"] == 2
    assert resolve_model_cfg({**MODEL, "num_action_classes": 0}, ts)["num_action_classes"] == 0
    with pytest.raises(config.ConfigError, match="num_action_classes=3 but the annotations have 2"):
        resolve_model_cfg(MODEL, ts)
    with pytest.raises(config.ConfigError, match="model.feat_dim=400 but the features have 16"):
        resolve_model_cfg({**MODEL, "feat_dim": 400, "num_action_classes": None}, ts)


@pytest.mark.parametrize("name", ["bmn_cls_400x100_activitynet.py", "demo.py"])
def test_shipped_configs_load(name):
    path = os.path.join(ROOT, "configs", "train", name)
    c, _ = config.load(path, TrainConfig, {"scaling.num_workers": 2})
    validate_train_config(c)
    assert c.batch_size % 2 == 0
    if name.startswith("bmn"):
        assert (c.epochs, c.batch_size, c.optim.lr, c.optim.milestones) == (9, 16, 1e-3, [7])
        assert c.model["num_action_classes"] == 200 and c.optim.grad_clip_max_norm == 40
    with pytest.raises(config.ConfigError, match="unknown key 'optim.momentum'"):
        config.load(path, TrainConfig, {"optim.momentum": 0.9})


def test_global_batch_must_divide_over_workers():
    c = cfg()
    c.scaling.num_workers = 3
    with pytest.raises(ValueError, match="not divisible by 3 workers"):
        validate_train_config(c)


def test_stop_after_epoch_bounds_the_run():
    assert loop.last_epoch(cfg()) == 9
    assert loop.last_epoch(cfg(stop_after_epoch=2)) == 2
    assert loop.last_epoch(cfg(stop_after_epoch=20)) == 9


def test_background_validation_queues_epochs_and_matches_validating_in_line(corpus):
    """Three epochs submitted back to back (training waits for none): each result is that
    epoch's weights validated in line, in submission order; at most ``max_behind`` run."""
    ts, shards = corpus
    c = cfg()
    state = loop.new_train_state(MODEL, c, "cpu")
    validator = BackgroundValidation(
        loop._validation_model(state.model), shards["val"], ts.val_annotations,
        ts.class_names, "float32", 32, skip=final_eval.CONSTANTS, max_behind=2,
    )  # fmt: skip
    expected = []
    try:
        for until in (1, 2, 3):
            train(state, shards["train"], c, until=until)
            expected.append(loop.validate(state, shards["val"], ts, "float32", 32))
            validator.submit(state.model)
            assert sum(not f.done() for f in validator._pending) <= 2
        validator.wait()
        assert validator.done() == 3
        got = [validator.result()[1] for _ in range(3)]
        with pytest.raises(RuntimeError, match="no validation was submitted"):
            validator.result()
    finally:
        validator.close()
    for want, have in zip(expected, got, strict=True):
        assert {k: have[k] for k in want} == pytest.approx(want)
        assert have["val_seconds"] > 0
    assert expected[0] != expected[2]  # the weights did change between the epochs
