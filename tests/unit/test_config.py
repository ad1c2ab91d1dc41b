import dataclasses

import pytest

from core import config


@dataclasses.dataclass
class Inner:
    lr: float = 1e-3
    steps: list[int] = dataclasses.field(default_factory=lambda: [7])


@dataclasses.dataclass
class Schema:
    name: str
    batch_size: int = 16
    use_amp: bool = False
    optim: Inner = dataclasses.field(default_factory=Inner)
    model: dict = dataclasses.field(default_factory=dict)
    endpoint: str | None = None


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_load_with_base_and_overrides(tmp_path):
    write(tmp_path, "base.py", "name = 'base'\nbatch_size = 8\noptim = dict(lr=0.1)\n")
    path = write(tmp_path, "child.py", "_base_ = './base.py'\nbatch_size = 4\n")
    cfg, raw = config.load(path, Schema, {"optim.lr": 0.5, "model.type": "X"})
    assert cfg.name == "base"
    assert cfg.batch_size == 4
    assert cfg.optim == Inner(lr=0.5, steps=[7])
    assert cfg.model == {"type": "X"}
    assert raw.optim.lr == 0.5


def test_unknown_key_in_file_names_key_and_file(tmp_path):
    path = write(tmp_path, "c.py", "name = 'x'\nbatch_sise = 4\n")
    with pytest.raises(config.ConfigError, match=r"c\.py.*unknown key 'batch_sise'"):
        config.load(path, Schema)


def test_unknown_nested_key_from_options(tmp_path):
    path = write(tmp_path, "c.py", "name = 'x'\n")
    with pytest.raises(config.ConfigError, match=r"--cfg-options.*unknown key 'optim\.lrr'"):
        config.load(path, Schema, {"optim.lrr": 1.0})


def test_wrong_type_names_key(tmp_path):
    path = write(tmp_path, "c.py", "name = 'x'\nbatch_size = 'big'\n")
    with pytest.raises(config.ConfigError, match=r"key 'batch_size' must be an integer"):
        config.load(path, Schema)
    path = write(tmp_path, "d.py", "name = 'x'\n")
    with pytest.raises(config.ConfigError, match=r"key 'optim.steps\[0\]' must be an integer"):
        config.load(path, Schema, {"optim.steps": ["a"]})
    with pytest.raises(config.ConfigError, match=r"key 'use_amp' must be bool"):
        config.load(path, Schema, {"use_amp": 1})


def test_missing_required_key(tmp_path):
    path = write(tmp_path, "c.py", "batch_size = 2\n")
    with pytest.raises(config.ConfigError, match="missing required key 'name'"):
        config.load(path, Schema)


def test_int_accepted_for_float_and_optional(tmp_path):
    path = write(tmp_path, "c.py", "name = 'x'\noptim = dict(lr=1)\nendpoint = 'http://h'\n")
    cfg, _ = config.load(path, Schema)
    assert isinstance(cfg.optim.lr, float)
    assert cfg.endpoint == "http://h"


def test_two_levels_of_base_refused(tmp_path):
    write(tmp_path, "a.py", "name = 'a'\n")
    write(tmp_path, "b.py", "_base_ = './a.py'\n")
    path = write(tmp_path, "c.py", "_base_ = './b.py'\n")
    with pytest.raises(config.ConfigError, match="one level of inheritance"):
        config.load(path, Schema)


def test_save_resolved_roundtrip(tmp_path):
    path = write(tmp_path, "c.py", "name = 'x'\noptim = dict(lr=0.25)\n")
    cfg, raw = config.load(path, Schema, {"batch_size": 3})
    out = str(tmp_path / "out" / "config.py")
    config.save_resolved(raw, out)
    again, _ = config.load(out, Schema)
    assert again == cfg


def test_missing_file(tmp_path):
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(str(tmp_path / "nope.py"), Schema)
