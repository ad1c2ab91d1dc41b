"""The detect pass's Ray Data plan: decoding stays its own operator of tasks in every layout
(Ray Data fuses a task stage into the actor stage after it when both ask for the same
resources, as the production config does with its GPUs turned off)."""

from __future__ import annotations

import pytest

from core import config
from core.detect import driver
from core.detect.config import DetectConfig
from core.pipeline.inputs import VideoInput

CPU_ONLY = {"detector.num_gpus": 0, "action.num_gpus": 0}


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


def operators(ds) -> list[str]:
    """The names of the executed plan's operators, first to last."""
    from ray.data._internal.logical.optimizers import get_execution_plan

    names, op = [], get_execution_plan(ds._logical_plan)[0].dag
    while op is not None:
        names.append(op.name)
        op = op.input_dependencies[0] if op.input_dependencies else None
    return names[::-1]


@pytest.mark.parametrize(
    ("path", "options"),
    [("configs/detect/slowonly_r101_ava21.py", CPU_ONLY), ("configs/detect/slowonly_r101_ava21.py", {}),
     ("configs/detect/demo.py", {})],
)  # fmt: skip
def test_decoding_is_not_fused_into_the_detector(ray_local, path, options):
    cfg, _ = config.load(path, DetectConfig, dict(options))
    todo = [VideoInput(video_id=f"v{i}", uri=f"/videos/v{i}.mp4") for i in range(3)]
    names = operators(driver.build_dataset(cfg, [1, 2], todo))
    assert "MapBatches(decode_videos)" in names, names
    assert "MapBatches(PersonBoxes)" in names, names
    assert not any("decode_videos" in n and "PersonBoxes" in n for n in names), names
