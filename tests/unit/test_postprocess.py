"""Batched post-processing against MMAction2 1.2.0's own BMN ``predict``, video by video.

Shape legend: B videos, T positions, K classes, P proposals per video.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

import core  # noqa: F401  (upstream shims before mmaction)
from core.io.tables import PROPOSALS_SCHEMA
from core.models.postprocess import (
    NO_LABEL_ID,
    batched_proposals,
    boundary_peaks,
    mmaction_covered_duration,
    span_mean_probs,
    to_columns,
)

SOFT_NMS = dict(soft_nms_alpha=0.4, soft_nms_low_threshold=0.5, soft_nms_high_threshold=0.9)
INTERVAL = 16


def _fake_outputs(B: int, T: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Network-like outputs: smooth boundary curves with peaks, noisy confidence maps, the
    last video plain uniform noise."""
    gen = torch.Generator().manual_seed(seed)

    def smooth_BT(x_BT: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool1d(x_BT[:, None], 5, 1, 2, count_include_pad=False)[:, 0]

    start_BT = torch.sigmoid(4 * smooth_BT(torch.randn(B, T, generator=gen)) - 1)
    end_BT = torch.sigmoid(4 * smooth_BT(torch.randn(B, T, generator=gen)) - 1)
    conf_map_B2DT = torch.sigmoid(torch.randn(B, 2, T, T, generator=gen))
    start_BT[-1], end_BT[-1] = torch.rand(T, generator=gen), torch.rand(T, generator=gen)
    return conf_map_B2DT, start_BT, end_BT


def _video_facts(B: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    facts = []
    for b in range(B):
        second = float(rng.uniform(3.0, 240.0))
        frames = int(round(second * rng.choice([24.0, 25.0, 29.97, 30.0])))
        facts.append(dict(video_name=f"v{b}", duration_second=second, duration_frame=frames))
    return facts


def _mmaction_predict(conf_map_B2DT, start_BT, end_BT, facts, top_k) -> list[list[dict]]:
    """MMAction2's ``BMN.predict`` on each video, its network replaced by the given outputs."""
    from mmaction.models.localizers import BMN
    from mmaction.structures import ActionDataSample
    from mmengine.registry import DefaultScope

    T = start_BT.shape[1]
    with DefaultScope.overwrite_default_scope("mmaction"):  # whatever scope a test left set
        bmn = BMN(
            temporal_dim=T,
            boundary_ratio=0.5,
            num_samples=2,
            num_samples_per_bin=1,
            feat_dim=4,
            post_process_top_k=top_k,
            feature_extraction_interval=INTERVAL,
            hidden_dim_1d=4,
            hidden_dim_2d=4,
            hidden_dim_3d=4,
            **SOFT_NMS,
        )
    results = []
    for b, meta in enumerate(facts):
        bmn._forward = lambda x, b=b: (
            conf_map_B2DT[b : b + 1],
            start_BT[b : b + 1],
            end_BT[b : b + 1],
        )
        sample = ActionDataSample()
        sample.set_metainfo(dict(meta, feature_frame=meta["duration_frame"]))
        (out,) = bmn.predict(torch.zeros(1, 4, T), [sample])
        assert out["video_name"] == meta["video_name"]
        results.append(out["proposal_list"])
    return results


@pytest.mark.parametrize(("T", "B", "top_k"), [(100, 4, 100), (16, 6, 100), (16, 3, 7)])
def test_matches_mmaction2_predict(T, B, top_k):
    conf_map_B2DT, start_BT, end_BT = _fake_outputs(B, T, seed=T + B)
    facts = _video_facts(B, seed=T)
    durations_B = torch.tensor(
        [
            mmaction_covered_duration(f["duration_second"], f["duration_frame"], INTERVAL)
            for f in facts
        ],
        dtype=torch.float64,
    )
    ours = batched_proposals(conf_map_B2DT, start_BT, end_BT, durations_B, top_k=top_k, **SOFT_NMS)
    theirs = _mmaction_predict(conf_map_B2DT, start_BT, end_BT, facts, top_k)

    assert ours.scores_BP.shape[0] == B and ours.scores_BP.shape[1] <= top_k
    for b, proposal_list in enumerate(theirs):
        n = len(proposal_list)
        assert n > 0
        assert ours.valid_BP[b].sum() == n
        assert ours.valid_BP[b, :n].all()
        scores = np.array([p["score"] for p in proposal_list])
        segments = np.array([p["segment"] for p in proposal_list])
        np.testing.assert_allclose(ours.scores_BP[b, :n].numpy(), scores, rtol=1e-12, atol=0)
        np.testing.assert_allclose(ours.segments_BP2[b, :n].numpy(), segments, rtol=1e-12, atol=0)
        # upstream's segments are grid positions times the covered duration, in seconds
        positions = ours.positions_BP2[b, :n].double().numpy()
        np.testing.assert_allclose(positions / T * durations_B[b].item(), segments, rtol=1e-12)


def test_boundary_peaks_known_answer():
    start_BT = torch.tensor([[0.1, 0.3, 0.2, 0.1, 0.9, 0.5, 0.6]])
    start_ok_BT, end_ok_BT = boundary_peaks(start_BT, start_BT)
    # local maxima 1, 4; above 0.45: 4, 5; the last position can't start, the first can't end
    assert start_ok_BT.tolist() == [[True, True, False, False, True, True, False]]
    assert end_ok_BT.tolist() == [[False, True, False, False, True, True, True]]


def test_single_candidate_and_padding():
    T = 8
    start_BT = torch.rand(2, T, generator=torch.Generator().manual_seed(0))
    end_BT = start_BT.clone()
    start_BT[0] = torch.tensor([1.0] + [0.0] * (T - 1))  # only position 0 starts
    end_BT[0] = torch.tensor([0.0] * (T - 1) + [1.0])  # only position T - 1 ends
    conf_map_B2DT = torch.full((2, 2, T, T), 0.5)
    durations_B = torch.tensor([10.0, 20.0])
    out = batched_proposals(conf_map_B2DT, start_BT, end_BT, durations_B, top_k=5, **SOFT_NMS)
    assert out.valid_BP.tolist() == [[True, False, False, False, False], [True] * 5]
    assert out.segments_BP2[0, 0].tolist() == [0.0, 10.0 * (T - 1) / T]
    assert out.scores_BP[0].tolist() == [0.25, 0.0, 0.0, 0.0, 0.0]
    columns = to_columns(out, ["one", "many"])
    assert columns["video_id"].tolist() == ["one"] + ["many"] * 5


def test_span_mean_probs_known_answer():
    probs_BKT = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 8.0, 0.0]]])
    start_BP = torch.tensor([[0, 1, 3]])
    end_BP = torch.tensor([[2, 4, 4]])
    mean_BKP = span_mean_probs(probs_BKT, start_BP, end_BP)
    assert mean_BKP.tolist() == [[[1.5, 3.0, 4.0], [0.0, 8.0 / 3.0, 0.0]]]


def test_labels_are_argmax_of_span_mean_and_never_background():
    B, T, K = 3, 16, 4
    conf_map_B2DT, start_BT, end_BT = _fake_outputs(B, T, seed=1)
    gen = torch.Generator().manual_seed(2)
    logits_BKT = torch.randn(B, K + 1, T, generator=gen)
    logits_BKT[:, K] += 5.0  # background dominates every position
    probs_BKT = logits_BKT.softmax(dim=1)
    out = batched_proposals(
        conf_map_B2DT,
        start_BT,
        end_BT,
        torch.ones(B),
        top_k=20,
        action_probs_BKT=probs_BKT,
        **SOFT_NMS,
    )
    for b in range(B):
        for p in range(int(out.valid_BP[b].sum())):
            s, e = out.positions_BP2[b, p].tolist()
            mean_K = probs_BKT[b, :K, s:e].double().mean(dim=1)
            assert out.labels_BP[b, p] == mean_K.argmax()
            expected = out.scores_BP[b, p] * mean_K.max()
            assert torch.isclose(out.label_scores_BP[b, p], expected, rtol=1e-12)
    assert (out.labels_BP < K).all()


def test_columns_fit_the_proposals_schema():
    B, T = 2, 16
    conf_map_B2DT, start_BT, end_BT = _fake_outputs(B, T, seed=3)
    probs_BKT = torch.rand(B, 3, T, generator=torch.Generator().manual_seed(4))
    durations_B = torch.tensor([12.5, 90.0])
    kwargs = dict(top_k=5, **SOFT_NMS)
    labelled = batched_proposals(
        conf_map_B2DT, start_BT, end_BT, durations_B, action_probs_BKT=probs_BKT, **kwargs
    )
    columns = to_columns(labelled, ["a", "b"], ["walk", "run", "background"])
    n = len(columns["video_id"])
    table = pa.table(
        {**columns, "uri": ["u"] * n, "run_id": ["r"] * n, "model": ["random"] * n},
        schema=PROPOSALS_SCHEMA,
    )
    assert table.num_rows == n == 10
    assert table.column("rank").to_pylist() == [0, 1, 2, 3, 4] * 2
    assert set(table.column("label").to_pylist()) <= {"walk", "run"}
    assert table.column("video_duration_s").to_pylist() == [12.5] * 5 + [90.0] * 5
    assert (columns["t_end"] <= columns["video_duration_s"]).all()

    plain = batched_proposals(conf_map_B2DT, start_BT, end_BT, durations_B, **kwargs)
    columns = to_columns(plain, ["a", "b"])
    assert (columns["label_id"] == NO_LABEL_ID).all()
    np.testing.assert_array_equal(columns["label_score"], columns["score"])
