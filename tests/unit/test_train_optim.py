"""core.train.optim: torch's Adam numbers, without torch._dynamo's import."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from core.train import optim

pytestmark = pytest.mark.unit


def run(optimizer_cls, steps: int = 6, **kwargs) -> tuple[list[torch.Tensor], dict]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    kwargs = {k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()}
    opt = optimizer_cls(model.parameters(), weight_decay=1e-4, **kwargs)  # (the rate, fresh)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [3], 0.1)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(8, 6, generator=gen)).pow(2).mean().backward()
        opt.step()
        sched.step()
    return [p.detach().clone() for p in model.parameters()], opt.state_dict()


@pytest.mark.parametrize(
    "kwargs",
    [{"lr": 1e-2}, {"lr": 1e-2, "fused": True},
     {"lr": torch.tensor(1e-2), "capturable": True, "fused": True}],
    ids=["foreach", "fused", "capturable_tensor_lr"],
)  # fmt: skip
def test_adam_steps_exactly_like_torchs(kwargs):
    ours, ours_state = run(optim.Adam, **kwargs)
    theirs, their_state = run(torch.optim.Adam, **kwargs)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
    assert ours_state["param_groups"] == their_state["param_groups"]
    for key, state in ours_state["state"].items():
        for name, value in state.items():
            assert torch.equal(value, their_state["state"][key][name]), name


def test_a_worker_trains_checkpoints_and_resumes_without_importing_torch_dynamo():
    """In a fresh process: the markers skipped, then what a worker does with its optimizer
    (build, steps, schedule, state_dict, load_state_dict) imports no torch._dynamo."""
    code = (
        "import sys, torch\n"
        "from core.train import optim\n"
        "from core.train.loop import build_optimizer\n"
        "from core.train.config import OptimSection\n"
        "print(optim.skip_dynamo_markers(), optim.skip_dynamo_markers())  # again: still all\n"
        "model = torch.nn.Linear(4, 3)\n"
        "for capturable in (False, True):\n"
        "    opt, sched = build_optimizer(model, OptimSection(), capturable)\n"
        "    for _ in range(3):\n"
        "        opt.zero_grad(); model(torch.randn(5, 4)).sum().backward(); opt.step()\n"
        "        sched.step()\n"
        "    opt.load_state_dict(opt.state_dict())\n"
        "print(type(opt).__name__, 'torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.split() == ["True", "True", "Adam", "False"]


def test_the_markers_stay_where_torch_dynamo_is_imported():
    code = "import torch._dynamo\nfrom core.train import optim\nprint(optim.skip_dynamo_markers())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
