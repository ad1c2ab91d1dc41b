"""core.train.step on the CPU: the channels-last layout the CUDA step runs in computes what the
default layout computes (forward, gradients, a few optimizer steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.train import data, loop, step
from core.train.config import OptimSection, TrainConfig
from tests.unit.samples import TINY_MODEL, C, K, T

pytestmark = pytest.mark.unit

MODEL = TINY_MODEL


def rows(n: int = 24) -> data.ShardArrays:
    rng = np.random.default_rng(0)
    gt = []
    for _ in range(n):
        g = int(rng.integers(1, 4))
        start = rng.uniform(0, 0.6, g)
        gt.append(np.stack([start, start + rng.uniform(0.05, 0.4, g), rng.integers(0, K, g)], 1))
    feats = rng.standard_normal((n, C, T), dtype=np.float32)
    return data.ShardArrays([f"v{i:03d}" for i in range(n)], feats, np.full(n, 50.0), gt)


def test_boundary_matching_channels_last_equals_the_default_layout():
    model = loop.build_model(MODEL, seed=0)
    layer, conv = model.fast_bm_layer, model.x_3d_p[0]
    feats = torch.randn(3, 32, T, requires_grad=True)
    expected = layer(feats, conv.weight, conv.bias)
    (grad_expected,) = torch.autograd.grad(expected.square().sum(), feats)
    layer.channels_last = True
    got = layer(feats, conv.weight, conv.bias)
    (grad_got,) = torch.autograd.grad(got.square().sum(), feats)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_got, grad_expected, rtol=1e-5, atol=1e-5)
    # cells with s + d >= T hold relu(bias), as in the default layout
    assert torch.equal(got[:, :, T - 1, 1:], expected[:, :, T - 1, 1:])


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("batched", [True, False])
def test_boundary_matching_channels_last_gradients_of_every_input(fused, batched):
    """The channels-last forms (fused GEMM epilogue with its own backward, or the unfused
    ops; the channel projection batched or folded by torch.matmul) give the default layout's
    values and gradients of features, weight and bias, with biases of both signs (cells with
    s + d >= T pass gradient to a positive bias only)."""
    model = loop.build_model(MODEL, seed=0).double()
    layer, conv = model.fast_bm_layer, model.x_3d_p[0]
    with torch.no_grad():
        conv.bias.copy_(torch.linspace(-0.5, 0.5, conv.bias.numel(), dtype=torch.double))
    feats = torch.randn(3, 32, T, dtype=torch.double, requires_grad=True)
    inputs = (feats, conv.weight, conv.bias)
    expected = layer(*inputs)
    grad_out = torch.randn_like(expected)
    grads_expected = torch.autograd.grad(expected, inputs, grad_out)
    layer.channels_last, layer.fused_epilogue, layer.batched_projection = True, fused, batched
    got = layer(*inputs)
    grads_got = torch.autograd.grad(got, inputs, grad_out)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads_got, grads_expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_fused_boundary_matching_backward_passes_gradcheck():
    model = loop.build_model(MODEL, seed=0).double()
    layer, conv = model.fast_bm_layer, model.x_3d_p[0]
    layer.channels_last = layer.fused_epilogue = layer.batched_projection = True
    bias = torch.linspace(-0.3, 0.3, conv.bias.numel(), dtype=torch.double).requires_grad_()
    weight = conv.weight.detach()[:6].clone().requires_grad_()  # 6 output channels: quick
    feats = torch.randn(2, 32, T, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, w, b: layer(f, w, b[:6]), (feats, weight, bias))


@pytest.mark.parametrize("channels_last", [True, False])
def test_bias_add_gradient_equals_the_convolutions_own(channels_last):
    """x_2d_p's bias added after the convolution with its gradient as a GEMV (the CUDA path
    of GemvBiasConv2d) gives what nn.Conv2d with its bias gives."""
    from core.models.network import GemvBiasConv2d, _BiasAdd

    torch.manual_seed(0)
    ref = torch.nn.Conv2d(8, 6, 3, padding=1).double()
    ours = GemvBiasConv2d(8, 6, 3, padding=1).double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 8, 5, 7, dtype=torch.double)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    expected = ref(x)
    got = _BiasAdd.apply(ours._conv_forward(x, ours.weight, None), ours.bias)
    grad = torch.randn_like(expected)
    torch.testing.assert_close(got, expected)
    assert got.is_contiguous(memory_format=torch.channels_last) == channels_last
    for a, b in zip(
        torch.autograd.grad(got, (ours.weight, ours.bias), grad),
        torch.autograd.grad(expected, (ref.weight, ref.bias), grad),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
    y = torch.randn(2, 6, 5, 7, dtype=torch.double, requires_grad=True)
    bias = torch.randn(6, dtype=torch.double, requires_grad=True)
    y_in = y.to(memory_format=torch.channels_last) if channels_last else y
    assert torch.autograd.gradcheck(lambda a, b: _BiasAdd.apply(a, b), (y_in, bias))


@pytest.mark.parametrize("fused", [False, True])
def test_channels_last_training_matches_the_default_layout(fused):
    """Five eager steps from the same weights and seeds: equal losses and weights (in
    channels-last, with the boundary-matching GEMM's fused form and batched projection or
    without)."""
    cfg = TrainConfig(model=dict(MODEL), batch_size=8, optim=OptimSection(lr=2e-3))
    shard_rows = rows()
    batches = data.epoch_batches(len(shard_rows), 8, 3, 0, 0, 0) * 2
    results = []
    for channels_last in (False, True):
        state = loop.new_train_state(cfg.model, cfg, "cpu")
        if channels_last:
            step.use_channels_last(state.model)
            layer = state.model.fast_bm_layer
            layer.fused_epilogue = layer.batched_projection = fused
        shard = step.to_device(shard_rows, state.model, "cpu")
        generator = loop.seed_epoch(cfg.seed, 0, 0, torch.device("cpu"))
        losses = step.train_epoch(
            state.model, state.model, state.optimizer, shard, batches,
            grad_clip=cfg.optim.grad_clip_max_norm, generator=generator,
        )  # fmt: skip
        results.append((losses, state.model.state_dict()))
    (losses_a, weights_a), (losses_b, weights_b) = results
    assert losses_a.keys() == losses_b.keys()
    for key in losses_a:
        assert losses_b[key] == pytest.approx(losses_a[key], rel=1e-5, abs=1e-7), key
    assert weights_b["x_2d_p.0.weight"].is_contiguous(memory_format=torch.channels_last)
    for key, value in weights_a.items():
        torch.testing.assert_close(weights_b[key], value, rtol=1e-4, atol=1e-6, msg=key)


def test_restored_optimizer_state_takes_the_parameters_layout():
    """A checkpoint from a default-layout run loads into a channels-last model (and back)."""
    cfg = TrainConfig(model=dict(MODEL), batch_size=8)
    plain = loop.new_train_state(cfg.model, cfg, "cpu")
    shard = step.to_device(rows(), plain.model, "cpu")
    step.train_epoch(plain.model, plain.model, plain.optimizer, shard,
                     data.epoch_batches(len(shard), 8, 1, 0, 0, 0))  # fmt: skip
    saved = loop.state_to_save(plain)
    target = loop.new_train_state(cfg.model, cfg, "cpu")
    step.use_channels_last(target.model)
    loop.restore_state(target, saved)
    weight = target.model.x_2d_p[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    moments = target.optimizer.state[weight]
    assert moments["exp_avg"].stride() == weight.stride()
    torch.testing.assert_close(moments["exp_avg"], saved["optimizer"]["state"][
        next(i for i, p in enumerate(target.optimizer.param_groups[0]["params"]) if p is weight)
    ]["exp_avg"])  # fmt: skip


def nonzero_span_loss(head, head_BCT, class_BDT):
    """The span head's loss as it was before it became capturable: the matched cells picked
    with ``nonzero`` into a padded (B, P) layout (the reference the masked loss must equal)."""
    b_idx, d_idx, s_idx = torch.nonzero(class_BDT >= 0, as_tuple=True)
    if len(b_idx) == 0:
        return head_BCT.sum() * 0.0
    B = head_BCT.shape[0]
    counts_B = torch.bincount(b_idx, minlength=B)
    P = int(counts_B.max())
    slot_M = torch.arange(len(b_idx)) - (counts_B.cumsum(0) - counts_B)[b_idx]
    start_BP = torch.zeros(B, P, dtype=torch.long)
    end_BP = torch.ones(B, P, dtype=torch.long)
    start_BP[b_idx, slot_M] = s_idx
    end_BP[b_idx, slot_M] = s_idx + d_idx + 1
    logits_BPK = head.logits(head_BCT, start_BP, end_BP)
    return torch.nn.functional.cross_entropy(
        logits_BPK[b_idx, slot_M], class_BDT[b_idx, d_idx, s_idx]
    )


def test_span_loss_without_nonzero_equals_the_picked_cells_loss():
    from core.models.heads import SpanActionHead
    from core.models.targets import BMNTargets, proposal_class_map

    torch.manual_seed(0)
    head = SpanActionHead(C, K, dropout=0.0, iou_threshold=0.5)
    gt_BG2 = torch.tensor(
        [[[0.1, 0.4], [0.5, 0.9]], [[0.2, 0.3], [0.0, 0.0]], [[0.0, 1.0], [0.3, 0.6]]]
    )
    valid_BG = torch.tensor([[True, True], [True, False], [True, True]])
    labels_BG = torch.tensor([[0, 2], [1, -1], [2, 1]])
    class_BDT = proposal_class_map(gt_BG2, valid_BG, labels_BG, T, 0.5)
    assert (class_BDT >= 0).sum() > 10
    targets = BMNTargets(None, None, None, None, class_BDT)
    feats = torch.randn(3, C, T, requires_grad=True)
    got = head.loss(head(feats, None), targets)
    (grad_got,) = torch.autograd.grad(got, feats)
    expected = nonzero_span_loss(head, head(feats, None), class_BDT)
    (grad_expected,) = torch.autograd.grad(expected, feats)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad_got, grad_expected, rtol=1e-5, atol=1e-7)
    # no matched cell: zero loss and zero gradients, as before
    none = head.loss(head(feats, None), BMNTargets(None, None, None, None, class_BDT * 0 - 1))
    assert none.item() == 0.0
    assert torch.equal(torch.autograd.grad(none, feats)[0], torch.zeros_like(feats))


def test_a_captured_step_follows_a_tensor_rate_and_recaptures_for_a_float_one():
    """``_same_lr``: a tensor rate is read by the graph (same tensor: no new capture, even
    with a new value), a float one is baked in (a new value needs a new capture)."""
    rate = torch.tensor(1e-3)
    assert step._same_lr(rate, rate)
    rate.fill_(1e-4)
    assert step._same_lr(rate, rate)
    assert not step._same_lr(torch.tensor(1e-4), rate)
    assert step._same_lr(1e-3, 1e-3) and not step._same_lr(1e-4, 1e-3)
    assert not step._same_lr(1e-4, rate)
