"""BMNNet and its MMAction2-registered twin BMNwActionCls against MMAction2's BMN: parameters,
checkpoints, outputs, BM stage, modes.

Shape legend: B batch, C feature channels, T positions, D durations, K logits, N samples.
"""

from __future__ import annotations

import io

import pytest
import torch

import core  # noqa: F401  (upstream shims before mmaction)
from core.models import (
    BMNNet,
    BMNOutputs,
    BMNwActionCls,
    BoundaryMatchingConv,
    build_bmn_cls,
    interp1d_sample_mask,
    pad_ground_truth,
    proposal_labels,
)

pytestmark = pytest.mark.unit

SMALL = dict(
    temporal_dim=16, boundary_ratio=0.5, num_samples=8, num_samples_per_bin=3, feat_dim=24,
    soft_nms_alpha=0.4, soft_nms_low_threshold=0.5, soft_nms_high_threshold=0.9,
    post_process_top_k=20, hidden_dim_1d=16, hidden_dim_2d=8, hidden_dim_3d=32,
)  # fmt: skip
REAL = dict(
    temporal_dim=100, boundary_ratio=0.5, num_samples=32, num_samples_per_bin=3, feat_dim=400,
    soft_nms_alpha=0.4, soft_nms_low_threshold=0.5, soft_nms_high_threshold=0.9,
    post_process_top_k=100,
)  # fmt: skip


def upstream_bmn(seed: int = 0, **kwargs):
    from mmaction.models.localizers import BMN

    torch.manual_seed(seed)
    return BMN(**kwargs).eval()


def state_dict_roundtrip(model: torch.nn.Module) -> dict:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf)


def random_feats(cfg: dict, batch: int = 3, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, cfg["feat_dim"], cfg["temporal_dim"], generator=gen)


@pytest.mark.parametrize(
    "T, ratio, N, bins", [(16, 0.5, 8, 3), (24, 0.3, 5, 2), (20, 0.5, 32, 1), (7, 0.0, 3, 4)]
)
def test_sample_mask_is_upstreams_bit_for_bit(T, ratio, N, bins):
    ref = upstream_bmn(**{**SMALL, "temporal_dim": T, "boundary_ratio": ratio,
                          "num_samples": N, "num_samples_per_bin": bins})  # fmt: skip
    assert torch.equal(interp1d_sample_mask(T, ratio, N, bins), ref.sample_mask.data)


def test_head_off_has_upstreams_parameter_count_at_real_scale():
    model = BMNNet(**REAL)
    n = sum(p.numel() for p in model.parameters())
    assert round(n / 1e6, 3) == 36.979
    with_head = BMNNet(**REAL, num_action_classes=200)
    assert sum(p.numel() for p in with_head.parameters()) - n == 400 * 201 + 201


@pytest.mark.parametrize("registered", [False, True])
def test_upstream_checkpoint_loads_strict_and_gives_same_outputs(registered):
    ref = upstream_bmn(**SMALL)
    ours = (BMNwActionCls if registered else BMNNet)(**SMALL).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(state_dict_roundtrip(ref), strict=True)
    feats_BCT = random_feats(SMALL)
    with torch.no_grad():
        conf_ref, start_ref, end_ref = ref._forward(feats_BCT)
        out = ours.forward_tensors(feats_BCT)
    torch.testing.assert_close(out.conf_map_B2DT, conf_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.start_BT, start_ref, rtol=0, atol=0)
    torch.testing.assert_close(out.end_BT, end_ref, rtol=0, atol=0)
    assert out.action_BXT is None
    # and back: our checkpoint loads into MMAction2's BMN
    ref.load_state_dict(state_dict_roundtrip(ours), strict=True)


def test_same_seed_draws_upstreams_initial_weights():
    """Layers are built in MMAction2's order, so a seed gives MMAction2's initial weights (and
    the head's come after them)."""
    ref = upstream_bmn(seed=3, **SMALL)
    torch.manual_seed(3)
    ours = BMNNet(**SMALL, num_action_classes=3)
    state = ours.state_dict()
    for key, value in ref.state_dict().items():
        assert torch.equal(state[key], value), key


def test_real_scale_outputs_match_upstream():
    ref = upstream_bmn(**REAL)
    ours = BMNNet(**REAL).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    feats_BCT = random_feats(REAL, batch=1)
    with torch.no_grad():
        conf_ref, _, _ = ref._forward(feats_BCT)
        conf = ours.forward_tensors(feats_BCT).conf_map_B2DT
    torch.testing.assert_close(conf, conf_ref, rtol=0, atol=1e-5)


def test_fast_bm_off_is_upstream_exactly():
    ref = upstream_bmn(**SMALL)
    ours = BMNNet(**SMALL, fast_bm=False).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    feats_BCT = random_feats(SMALL)
    with torch.no_grad():
        assert torch.equal(
            ours.forward_tensors(feats_BCT).conf_map_B2DT, ref._forward(feats_BCT)[0]
        )


@pytest.mark.parametrize("T, N, C, out_ch", [(16, 8, 12, 10), (32, 32, 24, 16)])
def test_bm_layer_matches_upstream_matmul_and_conv3d(T, N, C, out_ch):
    mask = interp1d_sample_mask(T, 0.5, N, 3)
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(C, out_ch, kernel_size=(N, 1, 1))
    feats_BCT = torch.randn(2, C, T, requires_grad=True)
    ref_BODT = torch.relu(conv(torch.matmul(feats_BCT, mask).reshape(2, C, N, T, T))).squeeze(2)
    layer = BoundaryMatchingConv(mask, T, N)
    out_BODT = layer(feats_BCT, conv.weight, conv.bias)
    scale = ref_BODT.abs().max().item()
    torch.testing.assert_close(out_BODT, ref_BODT, rtol=0, atol=1e-5 * scale)
    # gradients too (the layer trains)
    grad = torch.randn_like(ref_BODT)
    g_ref = torch.autograd.grad(ref_BODT, (feats_BCT, conv.weight, conv.bias), grad)
    g_out = torch.autograd.grad(out_BODT, (feats_BCT, conv.weight, conv.bias), grad)
    for a, b in zip(g_out, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * b.abs().max().item())


def test_loaded_sample_mask_reaches_the_fast_layer():
    ours = BMNNet(**SMALL)
    state = ours.state_dict()
    state["sample_mask"] = torch.rand_like(state["sample_mask"])
    ours.load_state_dict(state)
    rebuilt = BoundaryMatchingConv(
        state["sample_mask"], SMALL["temporal_dim"], SMALL["num_samples"]
    )
    assert torch.equal(ours.fast_bm_layer.mask_KV, rebuilt.mask_KV)


def test_ddp_ignore_list_names_real_entries():
    ours = BMNNet(**SMALL)
    names = dict(ours.named_parameters()) | dict(ours.named_buffers())
    assert set(ours._ddp_params_and_buffers_to_ignore) <= set(names)


def test_loss_mode_equals_upstream_loss():
    from mmaction.structures import ActionDataSample
    from mmengine.structures import InstanceData

    ref = upstream_bmn(**SMALL).train()
    ours = BMNwActionCls(**SMALL).train()
    ours.load_state_dict(ref.state_dict())
    feats = list(random_feats(SMALL))
    samples = []
    for seg in ([[0.1, 0.4], [0.3, 0.9]], [[0.0, 1.0]], [[0.25, 0.5]]):
        s = ActionDataSample()
        s.gt_instances = InstanceData(gt_bbox=torch.tensor(seg, dtype=torch.float64))
        samples.append(s)
    torch.manual_seed(5)
    loss_ref = ref(feats, samples, mode="loss")
    torch.manual_seed(5)
    loss = ours(feats, samples, mode="loss")
    assert loss.keys() == {"loss"}
    torch.testing.assert_close(loss["loss"], loss_ref["loss"], rtol=1e-5, atol=1e-6)


def test_batch_without_ground_truth_trains_without_nan():
    """A batch of videos without segments (a corpus's empty videos can fill a small batch)
    has no proposal cell to regress: its losses are finite and no weight turns NaN."""
    model = BMNNet(**SMALL, num_action_classes=3, cls_head="span").train()
    gt_BG2, valid_BG, labels_BG = pad_ground_truth(
        [torch.zeros(0, 2, dtype=torch.float64)] * 2, [torch.zeros(0, dtype=torch.long)] * 2
    )
    targets = model.make_targets(gt_BG2, valid_BG, labels_BG)
    losses = model.compute_loss(model.forward_tensors(random_feats(SMALL, batch=2)), targets)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    assert losses["pem_reg"] == 0.0
    losses["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def with_labels(segments, labels):
    from mmaction.structures import ActionDataSample
    from mmengine.structures import InstanceData

    out = []
    for i, (seg, lab) in enumerate(zip(segments, labels, strict=True)):
        s = ActionDataSample()
        s.gt_instances = InstanceData(
            gt_bbox=torch.tensor(seg, dtype=torch.float64), gt_labels=torch.tensor(lab)
        )
        s.set_metainfo(dict(video_name=f"v{i}", duration_second=32.0, duration_frame=512))
        out.append(s)
    return out


def test_modes_with_head():
    ours = BMNwActionCls(**SMALL, num_action_classes=3, cls_loss_weight=0.5).eval()
    feats = random_feats(SMALL, batch=2)
    samples = with_labels([[[0.1, 0.4]], [[0.2, 0.5], [0.6, 0.9]]], [[2], [0, 1]])
    out = ours(feats, samples, mode="tensor")
    assert isinstance(out, BMNOutputs)
    assert out.action_BXT.shape == (2, 4, SMALL["temporal_dim"])
    losses = ours(list(feats), samples, mode="loss")
    assert losses.keys() == {"loss_bmn", "loss_action_cls"}
    gt_BG2, valid_BG, labels_BG = pad_ground_truth(
        [s.gt_instances.gt_bbox for s in samples], [s.gt_instances.gt_labels for s in samples]
    )
    direct = ours.compute_loss(out, ours.make_targets(gt_BG2, valid_BG, labels_BG))
    torch.testing.assert_close(losses["loss_action_cls"], 0.5 * direct["action_cls"])
    torch.testing.assert_close(direct["loss"], direct["bmn"] + 0.5 * direct["action_cls"])
    with torch.no_grad():
        preds = ours(feats, samples, mode="predict")
    assert [p["video_name"] for p in preds] == ["v0", "v1"]
    first = preds[1]["proposal_list"][0]
    assert 0 <= first["label_id"] < 3
    assert first["label_score"] == pytest.approx(first["score"] * first["label_prob"])


def test_proposal_labels_mean_softmax_over_span_without_background():
    probs_KT = torch.tensor(
        [[0.7, 0.1, 0.1, 0.1, 0.1, 0.1],  # class 0
         [0.1, 0.5, 0.5, 0.1, 0.1, 0.1],  # class 1
         [0.1, 0.3, 0.3, 0.1, 0.3, 0.0],  # class 2
         [0.1, 0.1, 0.1, 0.7, 0.5, 0.8]]  # background
    )  # fmt: skip
    label_P, prob_P = proposal_labels(
        probs_KT.log(), torch.tensor([0, 1, 3, 0]), torch.tensor([1, 3, 6, 6])
    )
    assert label_P.tolist() == [0, 1, 2, 1]  # span [3, 6) is mostly background: best action
    torch.testing.assert_close(prob_P, torch.tensor([0.7, 0.5, 0.4 / 3, 1.4 / 6]))


def test_bf16_autocast_runs_and_stays_close():
    ours = BMNNet(**SMALL, num_action_classes=3).eval()
    feats = random_feats(SMALL)
    with torch.no_grad():
        ref = ours.forward_tensors(feats)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = ours.forward_tensors(feats)
    assert low.conf_map_B2DT.dtype == torch.float32
    assert (low.conf_map_B2DT - ref.conf_map_B2DT).abs().max() < 0.02
    assert (low.start_BT - ref.start_BT).abs().max() < 0.02


def fit(model, feats_BCT, targets, lr: float, steps: int, loss_key: str) -> None:
    """Adam steps on one loss of ``compute_loss`` (full batch)."""
    optim = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = model.compute_loss(model.forward_tensors(feats_BCT), targets)[loss_key]
        optim.zero_grad()
        loss.backward()
        optim.step()


def test_head_learns_position_classes():
    torch.manual_seed(0)
    cfg = {**SMALL, "feat_dim": 8}
    model = BMNNet(**cfg, num_action_classes=2)
    T = cfg["temporal_dim"]
    gt_BG2 = torch.tensor([[[0.0, 0.5]], [[0.25, 1.0]]], dtype=torch.float64)
    labels_BG = torch.tensor([[0], [1]])
    targets = model.make_targets(gt_BG2, None, labels_BG)
    # features say which class (or background) each position holds
    feats_BCT = torch.zeros(2, 8, T)
    feats_BCT[:, :3] = torch.nn.functional.one_hot(targets.action_BT, 3).permute(0, 2, 1).float()
    fit(model, feats_BCT, targets, lr=0.05, steps=15, loss_key="loss")
    logits_BKT = model.forward_tensors(feats_BCT).action_BXT
    assert torch.equal(logits_BKT.argmax(1), targets.action_BT)


def test_build_from_config_dict_and_registry():
    from mmaction.registry import MODELS

    model = build_bmn_cls(dict(type="BMNwActionCls", **SMALL, num_action_classes=4))
    assert model.num_action_classes == 4
    assert isinstance(MODELS.build(dict(type="BMNwActionCls", **SMALL)), BMNwActionCls)
    assert isinstance(build_bmn_cls(dict(type="BMN", **SMALL)), BMNNet)
    with pytest.raises(ValueError, match="num_action_class"):
        build_bmn_cls(dict(SMALL, num_action_class=4))
    with pytest.raises(ValueError, match="feat_dim"):
        build_bmn_cls({k: v for k, v in SMALL.items() if k != "feat_dim"})
    with pytest.raises(ValueError, match="TEM"):
        build_bmn_cls(dict(type="TEM", **SMALL))


def test_pointwise_head_keeps_the_lectures_parameter_names():
    model = BMNNet(**SMALL, num_action_classes=3)
    head_keys = sorted(k for k in model.state_dict() if k.startswith("x_1d_cls"))
    assert head_keys == ["x_1d_cls.bias", "x_1d_cls.weight"]
    assert model.x_1d_cls.weight.shape == (4, SMALL["feat_dim"], 1)
    with pytest.raises(ValueError, match="cls_head"):
        BMNNet(**SMALL, num_action_classes=3, cls_head="global")


@pytest.mark.parametrize("kind", ["temporal", "span"])
def test_other_heads_round_trip_and_label_every_proposal(kind):
    torch.manual_seed(0)
    model = BMNNet(**SMALL, num_action_classes=3, cls_head=kind).eval()
    twin = BMNNet(**SMALL, num_action_classes=3, cls_head=kind).eval()
    twin.load_state_dict(model.state_dict(), strict=True)
    feats = random_feats(SMALL, batch=2)
    with torch.no_grad():
        out, out_twin = model.forward_tensors(feats), twin.forward_tensors(feats)
        start_BP, end_BP = torch.tensor([[0, 3], [5, 0]]), torch.tensor([[4, 16], [9, 1]])
        label_BP, prob_BP = model.label_proposals(out.action_BXT, start_BP, end_BP)
        label_twin, _ = twin.label_proposals(out_twin.action_BXT, start_BP, end_BP)
    assert torch.equal(label_BP, label_twin)
    assert label_BP.shape == (2, 2) and ((label_BP >= 0) & (label_BP < 3)).all()
    assert ((prob_BP > 0) & (prob_BP <= 1)).all()


def test_span_head_learns_classes_from_the_span_against_its_video():
    """Each video holds one segment whose class shows only as a change of the features inside
    it against the video's own (random) level: the span head must learn it from few steps."""
    torch.manual_seed(0)
    T, C, K = SMALL["temporal_dim"], 8, 3
    model = BMNNet(**{**SMALL, "feat_dim": C}, num_action_classes=K, cls_head="span")
    gen = torch.Generator().manual_seed(1)
    B = 24
    starts = torch.randint(0, T // 2, (B,), generator=gen)
    lengths = torch.randint(3, T // 2, (B,), generator=gen)
    labels = torch.arange(B) % K
    feats_BCT = 0.1 * torch.randn(B, C, T, generator=gen) + 5 * torch.rand(B, C, 1, generator=gen)
    for b in range(B):
        feats_BCT[b, labels[b], starts[b] : starts[b] + lengths[b]] += 1.0
    gt_BG2 = torch.stack([starts / T, (starts + lengths) / T], 1)[:, None].double()
    targets = model.make_targets(gt_BG2, None, labels[:, None])
    assert targets.cell_class_BDT is not None
    fit(model, feats_BCT, targets, lr=0.01, steps=60, loss_key="action_cls")
    model.eval()
    with torch.no_grad():
        head = model.forward_tensors(feats_BCT).action_BXT
        label_B1, _ = model.label_proposals(head, starts[:, None], (starts + lengths)[:, None])
    assert (label_B1[:, 0] == labels).float().mean() >= 0.9


def test_grouped_conv_as_a_dense_block_diagonal_one_gives_the_same_values_and_gradients():
    """The CUDA form of BMN's grouped 1-d convolutions (core.models.network.GroupedConv1d):
    the dense convolution with the block-diagonal weight, against the grouped one."""
    import torch.nn.functional as F

    from core.models.network import GroupedConv1d, block_diagonal

    torch.manual_seed(0)
    conv = GroupedConv1d(12, 8, kernel_size=3, padding=1, groups=4).double()
    x_BCT = torch.randn(2, 12, 7, dtype=torch.float64, requires_grad=True)
    grouped = conv(x_BCT)  # on the CPU: the grouped kernel
    dense_weight = block_diagonal(conv.weight, 4)
    assert dense_weight.shape == (8, 12, 3)
    assert torch.count_nonzero(dense_weight).item() == conv.weight.numel()
    dense = F.conv1d(x_BCT, dense_weight, conv.bias, padding=1)
    torch.testing.assert_close(dense, grouped, rtol=0, atol=1e-12)
    grads_grouped = torch.autograd.grad(grouped.square().sum(), (x_BCT, conv.weight, conv.bias))
    grads_dense = torch.autograd.grad(dense.square().sum(), (x_BCT, conv.weight, conv.bias))
    for a, b in zip(grads_dense, grads_grouped, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
