"""BMN inference: MMAction2's per-video ``predict`` against our batched path, in one run.

    python -m benchmarks.bmn --output benchmarks/results/bmn_h100.json [--device cuda]

Measures, on the same weights and inputs (ActivityNet settings: 400 × 100, top 100):

* MMAction2 1.2.0 ``BMN.predict``, one video per call, with its post-processing;
* ours end to end: ``BMNwActionCls`` (fast boundary matching, 200-class head) +
  :mod:`core.models.postprocess` for whole batches, fp32 and bf16 autocast, videos/s;
* that both give the same proposals in fp32 (max differences reported);
* bf16 accuracy: a model trained briefly on synthetic features whose segments are visible in
  the features, then AR@100 of its fp32 and bf16 proposals on held-out synthetic videos
  (bf16 is usable for inference when the two differ by less than 0.005).

Training throughput is ``benchmarks/bmn_train.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import pathlib
import time

import numpy as np
import torch

import core  # noqa: F401  (upstream shims)
from core.eval.proposals import average_recall_at_avg_proposals
from core.models.bmn import BMNwActionCls
from core.models.localizer import Localizer
from core.models.targets import pad_ground_truth

BMN_ANET = dict(
    temporal_dim=100, boundary_ratio=0.5, num_samples=32, num_samples_per_bin=3, feat_dim=400,
    soft_nms_alpha=0.4, soft_nms_low_threshold=0.5, soft_nms_high_threshold=0.9,
    post_process_top_k=100,
)  # fmt: skip


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def upstream_predict_rate(model, feats_NCT: torch.Tensor, device: str) -> tuple[float, list]:
    """MMAction2's predict, one video per call (its own loop and NumPy post-processing)."""
    from mmaction.structures import ActionDataSample
    from mmengine.structures import InstanceData  # noqa: F401  (mmaction's data samples need it)

    outputs = []
    t0 = time.perf_counter()
    for i in range(len(feats_NCT)):
        sample = ActionDataSample()
        sample.set_metainfo({"video_name": f"v{i}", "duration_second": 120.0,
                             "duration_frame": 3600, "feature_frame": 3600})  # fmt: skip
        with torch.no_grad():
            (res,) = model.predict(feats_NCT[i : i + 1].to(device), [sample])
        outputs.append(res["proposal_list"])
    sync(device)
    return len(feats_NCT) / (time.perf_counter() - t0), outputs


def ours_rate(loc: Localizer, feats_NCT: np.ndarray, batch: int, device: str, reps: int) -> float:
    durations = np.full(len(feats_NCT), 120.0)
    loc.propose(feats_NCT[:batch], durations[:batch])  # warm-up
    sync(device)
    t0 = time.perf_counter()
    n = 0
    for _ in range(reps):
        for i in range(0, len(feats_NCT), batch):
            loc.propose(feats_NCT[i : i + batch], durations[i : i + batch])
            n += min(batch, len(feats_NCT) - i)
    sync(device)
    return n / (time.perf_counter() - t0)


def synthetic_videos(n: int, C: int, T: int, K: int, rng: np.random.Generator):
    """Features where each action is visible: a class prototype added inside its segment."""
    protos_KC = rng.normal(size=(K, C)).astype(np.float32)
    feats = rng.normal(scale=0.5, size=(n, C, T)).astype(np.float32)
    segments, labels = [], []
    for i in range(n):
        g = int(rng.integers(1, 4))
        starts = np.sort(rng.uniform(0, 0.8, g))
        ends = np.minimum(starts + rng.uniform(0.05, 0.4, g), 1.0)
        cls = rng.integers(0, K, g)
        for s, e, k in zip(starts, ends, cls, strict=True):
            a, b = int(s * T), max(int(s * T) + 1, int(e * T))
            feats[i, :, a:b] += protos_KC[k][:, None]
        segments.append(np.stack([starts, ends], 1))
        labels.append(cls)
    return feats, segments, labels


def bf16_accuracy(device: str, steps: int, test_videos: int, seed: int = 0) -> dict:
    """Trains briefly (bf16 autocast where CUDA), then AR@100 of fp32 vs bf16 inference."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    K, C, T = 20, BMN_ANET["feat_dim"], BMN_ANET["temporal_dim"]
    model = BMNwActionCls(**BMN_ANET, num_action_classes=K).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    train_x, train_seg, train_lab = synthetic_videos(2048, C, T, K, rng)
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = rng.choice(len(train_x), 16, replace=False)
        x = torch.from_numpy(train_x[idx]).to(device)
        gt = pad_ground_truth([torch.from_numpy(train_seg[i]) for i in idx],
                              [torch.from_numpy(train_lab[i]) for i in idx], device)  # fmt: skip
        with torch.autocast("cuda", torch.bfloat16, enabled=device == "cuda"):
            out = model.forward_tensors(x)
        loss = model.compute_loss(out, model.make_targets(gt[0].float(), gt[1], gt[2]))["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 40)
        opt.step()
    train_s = time.perf_counter() - t0
    test_x, test_seg, _ = synthetic_videos(test_videos, C, T, K, rng)
    duration = 100.0
    gt = {f"v{i}": s * duration for i, s in enumerate(test_seg)}
    result = {"train_steps": steps, "train_seconds": train_s, "final_loss": loss.item()}
    for dtype in ("float32", "tf32", "bfloat16"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        loc = Localizer(model, [f"c{k}" for k in range(K)], device, dtype)
        chunks = [loc.propose(test_x[i : i + 256], np.full(len(test_x[i : i + 256]), duration))
                  for i in range(0, len(test_x), 256)]  # fmt: skip
        props = np.concatenate([c[0] for c in chunks])
        valid = np.concatenate([c[2] for c in chunks])
        proposals = {f"v{i}": props[i][valid[i]][:, :3] for i in range(len(test_x))}
        ar = average_recall_at_avg_proposals(gt, proposals)
        result[dtype] = {k: float(v) for k, v in ar.metrics().items()}
    for dtype in ("tf32", "bfloat16"):
        result[f"{dtype}_AR@100_abs_diff"] = abs(
            result["float32"]["AR@100"] - result[dtype]["AR@100"]
        )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--videos", type=int, default=1024)
    parser.add_argument("--upstream-videos", type=int, default=64)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--train-steps", type=int, default=1500)
    parser.add_argument("--test-videos", type=int, default=4096)
    args = parser.parse_args()
    device = args.device
    # cudnn.benchmark with bf16 autocast made MMAction2's Conv3d stall for minutes on an H100
    torch.backends.cudnn.benchmark = False

    from mmaction.models.localizers import BMN

    torch.manual_seed(0)
    upstream = BMN(**BMN_ANET).to(device).eval()
    ours = BMNwActionCls(**BMN_ANET, num_action_classes=200)
    missing, unexpected = ours.load_state_dict(upstream.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("x_1d_cls", "fast_bm_layer")) for k in missing)
    feats = torch.rand(args.videos, 400, 100)
    result: dict = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch": torch.__version__, "T": 100, "C": 400, "top_k": 100,
    }  # fmt: skip
    rate, upstream_props = upstream_predict_rate(upstream, feats[: args.upstream_videos], device)
    result["mmaction2_predict_videos_per_s"] = rate
    with torch.no_grad():  # same weights, same inputs: the network outputs (TF32 off)
        torch.backends.cudnn.allow_tf32 = False
        x = feats[:64].to(device)
        up_conf, up_start, up_end = upstream._forward(x)
        out = ours.to(device).eval().forward_tensors(x)
        torch.backends.cudnn.allow_tf32 = True
    result["fp32_outputs_max_abs_diff"] = max(
        float((up_conf - out.conf_map_B2DT).abs().max()),
        float((up_start - out.start_BT).abs().max()),
        float((up_end - out.end_BT).abs().max()),
    )
    feats_np = feats.numpy()
    for dtype in ("float32", "tf32", "bfloat16"):
        loc = Localizer(ours, [f"c{k}" for k in range(200)], device, dtype)
        for b in args.batches:
            r = ours_rate(loc, feats_np, b, device, reps=1)
            result[f"ours_{dtype}_batch{b}_videos_per_s"] = r
    best = max(v for k, v in result.items() if k.startswith("ours_") and k.endswith("_per_s"))
    result["best_ours_videos_per_s"] = best
    result["speedup_vs_mmaction2"] = best / rate
    result["bf16_accuracy"] = bf16_accuracy(device, args.train_steps, args.test_videos)
    pathlib.Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
