import hashlib
import uuid

import pytest
import torch
from mmengine.logging import HistoryBuffer

from core import storage
from core.io.checkpoint import (
    UnsafeCheckpointError,
    load_checkpoint,
    load_state_dict_from,
    save_checkpoint,
    unwrap_state_dict,
)


def _state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {"conv.weight": torch.randn(4, 3, generator=gen), "conv.bias": torch.zeros(4)}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k])


@pytest.mark.parametrize("where", ["local", "memory"])
def test_round_trip_and_sha256(tmp_path, where):
    uri = (
        str(tmp_path / "ckpt" / "best.pth")
        if where == "local"
        else f"memory://ckpt-{uuid.uuid4().hex}/best.pth"
    )
    state = {"model": _state(), "meta": {"epoch": 3, "classes": ["a", "b"]}}
    sha = save_checkpoint(state, uri)
    assert sha == hashlib.sha256(storage.read_bytes(uri)).hexdigest()

    obj, sha_read = load_checkpoint(uri)
    assert sha_read == sha
    assert obj["meta"] == {"epoch": 3, "classes": ["a", "b"]}
    _assert_same(obj["model"], state["model"])

    sd, sha_sd = load_state_dict_from(uri)
    assert sha_sd == sha
    _assert_same(sd, state["model"])


def test_mmengine_checkpoint_refused_then_accepted_with_opt_in(tmp_path):
    uri = str(tmp_path / "epoch_9.pth")
    buffer = HistoryBuffer()
    buffer.update(0.5)
    state = {
        "meta": {"epoch": 9},
        "state_dict": {f"module.{k}": v for k, v in _state().items()},
        "message_hub": {"log_scalars": {"train/loss": buffer}},
    }
    save_checkpoint(state, uri)

    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint(uri)
    message = str(info.value)
    assert "allow_pickle=True" in message
    assert "checkpoint.allow_pickle=True" in message
    assert "HistoryBuffer" in message
    with pytest.raises(UnsafeCheckpointError):
        load_state_dict_from(uri)

    obj, _ = load_checkpoint(uri, allow_pickle=True)
    assert isinstance(obj["message_hub"]["log_scalars"]["train/loss"], HistoryBuffer)
    sd, _ = load_state_dict_from(uri, allow_pickle=True)
    _assert_same(sd, _state())  # unwrapped and DDP prefix stripped


def test_unwrap_state_dict_forms():
    bare = _state()
    _assert_same(unwrap_state_dict(bare), bare)
    _assert_same(unwrap_state_dict({"state_dict": bare, "meta": {}}), bare)
    _assert_same(unwrap_state_dict({"model": bare, "meta": {"step": 1}}), bare)
    ddp = {f"module.{k}": v for k, v in bare.items()}
    _assert_same(unwrap_state_dict({"state_dict": ddp}), bare)
    # a prefix on only some keys is a real submodule name, not DDP's
    partial = {"module.x": torch.ones(1), "y": torch.ones(1)}
    assert unwrap_state_dict(partial).keys() == partial.keys()
    with pytest.raises(ValueError, match="no state dict"):
        unwrap_state_dict({"meta": {"epoch": 1}, "optimizer": {"lr": 0.1}})


def test_corrupt_file_is_not_reported_as_unsafe(tmp_path):
    uri = str(tmp_path / "broken.pth")
    storage.write_bytes(uri, b"not a checkpoint at all")
    with pytest.raises(Exception) as info:
        load_checkpoint(uri)
    assert not isinstance(info.value, UnsafeCheckpointError)
