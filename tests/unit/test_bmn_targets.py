"""Batched BMN targets and losses against MMAction2's generate_labels and BMNLoss
(core.models.targets, core.models.losses).

Shape legend: B batch, G segments per video, T positions, D durations, K logits.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import core  # noqa: F401  (upstream shims before mmaction)
from core.models.losses import action_cls_loss, bmn_loss, pem_reg_loss
from core.models.targets import BMNTargets, action_targets, bmn_targets, pad_ground_truth

pytestmark = pytest.mark.unit

T = 20


@pytest.fixture(scope="module")
def upstream():
    from mmaction.models.localizers import BMN

    return BMN(
        temporal_dim=T, boundary_ratio=0.5, num_samples=4, num_samples_per_bin=2, feat_dim=8,
        soft_nms_alpha=0.4, soft_nms_low_threshold=0.5, soft_nms_high_threshold=0.9,
        post_process_top_k=10, hidden_dim_1d=8, hidden_dim_2d=8, hidden_dim_3d=8,
    )  # fmt: skip


def ground_truth(dtype: torch.dtype) -> list[torch.Tensor]:
    """Several overlapping segments, one segment, segments at 0 and 1, grid-aligned ones
    (IoP exactly 0.5 at neighbouring anchors), and random ones."""
    gen = torch.Generator().manual_seed(1)
    rand = [torch.rand(n, 2, generator=gen, dtype=torch.float64).sort(1).values for n in (1, 4, 7)]
    fixed = [
        [[0.1, 0.5], [0.3, 0.9], [0.35, 0.45]],
        [[0.42, 0.61]],
        [[0.0, 0.2], [0.8, 1.0], [0.0, 1.0]],
        [[3 / T, 7 / T], [10 / T, 11 / T], [0.5, 0.5 + 1 / T]],
    ]
    return [torch.tensor(f, dtype=torch.float64).to(dtype) for f in fixed] + [
        r.to(dtype) for r in rand
    ]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_targets_equal_upstream_generate_labels(upstream, dtype):
    segments = ground_truth(dtype)
    conf_ref, start_ref, end_ref = upstream.generate_labels(segments)
    gt_BG2, valid_BG, _ = pad_ground_truth(segments)
    got = bmn_targets(gt_BG2, valid_BG, T)
    # bit for bit: upstream's dtypes are followed step by step
    assert torch.equal(got.iou_map_BDT, conf_ref)
    assert torch.equal(got.start_BT, start_ref)
    assert torch.equal(got.end_BT, end_ref)
    assert got.action_BT is None


def test_loss_equals_upstream_bmnloss_with_same_draws(upstream):
    segments = ground_truth(torch.float64)
    B = len(segments)
    gen = torch.Generator().manual_seed(2)
    conf_B2DT = torch.rand(B, 2, T, T, generator=gen)
    start_BT, end_BT = torch.rand(B, T, generator=gen), torch.rand(B, T, generator=gen)
    labels = upstream.generate_labels(segments)
    torch.manual_seed(7)
    ref = upstream.loss_cls(conf_B2DT, start_BT, end_BT, *labels, upstream.bm_mask)
    gt_BG2, valid_BG, _ = pad_ground_truth(segments)
    torch.manual_seed(7)
    got = bmn_loss(conf_B2DT, start_BT, end_BT, bmn_targets(gt_BG2, valid_BG, T), upstream.bm_mask)
    for key, value in zip(("bmn", "tem", "pem_reg", "pem_cls"), ref, strict=True):
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_pem_reg_generator_is_deterministic_and_sampling_matters():
    gen = torch.Generator().manual_seed(0)
    iou_BDT = torch.rand(2, T, T, generator=gen)
    pred_BDT = torch.rand(2, T, T, generator=gen)
    mask_DT = torch.ones(T, T)
    a = pem_reg_loss(pred_BDT, iou_BDT, mask_DT, generator=torch.Generator().manual_seed(3))
    b = pem_reg_loss(pred_BDT, iou_BDT, mask_DT, generator=torch.Generator().manual_seed(3))
    c = pem_reg_loss(pred_BDT, iou_BDT, mask_DT, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_pad_ground_truth_pads_with_invalid_entries():
    gt_BG2, valid_BG, labels_BG = pad_ground_truth(
        [torch.tensor([[0.1, 0.2]]), torch.tensor([[0.0, 0.5], [0.4, 0.9]])],
        [torch.tensor([3]), torch.tensor([1, 2])],
    )
    assert gt_BG2.shape == (2, 2, 2)
    assert valid_BG.tolist() == [[True, False], [True, True]]
    assert labels_BG.tolist() == [[3, -1], [1, 2]]
    assert gt_BG2[0, 1].tolist() == [0.0, 0.0]


def test_padding_does_not_change_targets(upstream):
    segments = ground_truth(torch.float64)
    gt_BG2, valid_BG, _ = pad_ground_truth(segments)
    alone = [bmn_targets(*pad_ground_truth([s])[:2], T) for s in segments]
    batched = bmn_targets(gt_BG2, valid_BG, T)
    for b, one in enumerate(alone):
        assert torch.equal(batched.iou_map_BDT[b], one.iou_map_BDT[0])
        assert torch.equal(batched.start_BT[b], one.start_BT[0])


def test_action_targets_known_answer():
    # T = 10: position t is [t/10, (t+1)/10], centre (t + 0.5)/10
    gt_BG2 = torch.tensor(
        [
            [[0.0, 0.42], [0.28, 0.61], [0.0, 0.0], [0.9, 0.93]],  # overlap, pad, tiny
            [[0.5, 1.0], [0.05, 0.15], [0.7, 0.8], [0.0, 0.0]],  # label -1, inner
        ],
        dtype=torch.float64,
    )
    valid_BG = torch.tensor([[True, True, False, True], [True, True, True, False]])
    labels_BG = torch.tensor([[0, 1, 2, 2], [1, -1, 0, -1]])
    got = action_targets(gt_BG2, valid_BG, labels_BG, temporal_dim=10, num_classes=3)
    # video 0: centres .05-.35 -> seg 0 (label 0) except .35 also in seg 1 (shorter: 0.33 <
    # 0.42) -> 1; .45, .55 -> seg 1; .65-.85 background; tiny [0.9, 0.93] covers no centre
    # but its midpoint 0.915 is in position 9 -> 2
    assert got[0].tolist() == [0, 0, 0, 1, 1, 1, 3, 3, 3, 2]
    # video 1: .55-.95 -> seg 0 (label 1); .75 also in seg 2 (shorter) -> 0; label -1 ignored
    assert got[1].tolist() == [3, 3, 3, 3, 3, 1, 1, 0, 1, 1]


def test_video_without_segments_gets_empty_targets():
    gt_BG2, valid_BG, labels_BG = pad_ground_truth(
        [torch.zeros(0, 2, dtype=torch.float64), torch.tensor([[0.2, 0.6]], dtype=torch.float64)],
        [torch.zeros(0, dtype=torch.int64), torch.tensor([4])],
    )
    got = bmn_targets(gt_BG2, valid_BG, T, labels_BG, num_classes=5)
    assert got.iou_map_BDT[0].abs().sum() == 0 and got.start_BT[0].abs().sum() == 0
    assert (got.action_BT[0] == 5).all()
    assert (got.action_BT[1] == 4).any()


def test_action_cls_loss_is_cross_entropy_with_background_weight():
    gen = torch.Generator().manual_seed(0)
    logits_BKT = torch.randn(2, 4, T, generator=gen)
    action_BT = torch.randint(0, 4, (2, T), generator=gen)
    plain = action_cls_loss(logits_BKT, action_BT)
    torch.testing.assert_close(plain, F.cross_entropy(logits_BKT, action_BT))
    weighted = action_cls_loss(logits_BKT, action_BT, background_weight=0.25)
    nll_BT = F.cross_entropy(logits_BKT, action_BT, reduction="none")
    w_BT = torch.where(action_BT == 3, 0.25, 1.0)
    torch.testing.assert_close(weighted, (nll_BT * w_BT).sum() / w_BT.sum())


def test_targets_type():
    t = bmn_targets(torch.tensor([[[0.1, 0.3]]]), None, T, torch.tensor([[0]]), num_classes=2)
    assert isinstance(t, BMNTargets)
    assert t.iou_map_BDT.shape == (1, T, T) and t.start_BT.shape == (1, T)
    assert t.action_BT.dtype == torch.int64 and t.action_BT.shape == (1, T)


def test_proposal_class_map_marks_cells_by_the_best_overlapping_segment():
    from core.models.targets import proposal_class_map

    T4 = 4  # cells (d, s) = [s/4, (s+d+1)/4]
    gt_BG2 = torch.tensor([[[0.0, 0.5], [0.5, 1.0]]], dtype=torch.float64)
    class_BDT = proposal_class_map(gt_BG2, torch.ones(1, 2, dtype=torch.bool),
                                   torch.tensor([[2, 0]]), T4, min_iou=0.5)  # fmt: skip
    got = class_BDT[0]
    assert got[1, 0] == 2 and got[1, 2] == 0  # exactly the two segments
    assert got[0, 0] == 2 and got[0, 3] == 0  # half of a segment: IoU 0.5
    assert got[3, 0] == 2  # the whole video: IoU 0.5 with both, a tie goes to the first
    assert got[1, 1] == -1  # [1/4, 3/4]: IoU 1/3 with each segment
    assert (got[3, 1:] == -1).all() and (got[2, 2:] == -1).all()  # s + d >= T: no proposal
