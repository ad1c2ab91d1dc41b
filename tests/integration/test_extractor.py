"""core.features.extractor with random-weight recognizers on the CPU (tiny inputs)."""

from __future__ import annotations

import copy
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

pytest.importorskip("mmcv")

from core import config, storage  # noqa: E402
from core.features import ExtractorConfig, presets  # noqa: E402
from core.features.extractor import FeatureExtractor  # noqa: E402
from core.features.rescale import rescale_features  # noqa: E402
from core.video import SamplingConfig, iter_snippets  # noqa: E402
from tests.integration import videos  # noqa: E402

TSN_R18_DEMO = presets.demo_recognizer()
TSN_R50_KINETICS400 = presets.recognizer("tsn_r50_kinetics400")["model"]
SLOWONLY_R50_8X8_KINETICS400 = presets.recognizer("slowonly_r50_kinetics400")["model"]


def random_clips(n: int, t: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, t, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def demo_scores() -> FeatureExtractor:
    """Splits inputs into forwards of at most 3 snippets."""
    return FeatureExtractor(ExtractorConfig(model=TSN_R18_DEMO, output="scores", batch_size=3))


@pytest.fixture(scope="module")
def demo_pooled() -> FeatureExtractor:
    return FeatureExtractor(ExtractorConfig(model=TSN_R18_DEMO, output="pooled"))


def test_demo_shapes_and_softmax(demo_scores, demo_pooled):
    clips_NTHWC = random_clips(5, 1, 56)
    scores_NK = demo_scores.extract(clips_NTHWC)
    pooled_NC = demo_pooled.extract(clips_NTHWC)
    assert scores_NK.shape == (5, 400) and scores_NK.dtype == np.float32
    np.testing.assert_allclose(scores_NK.sum(axis=1), 1.0, rtol=1e-5)
    width = TSN_R18_DEMO["cls_head"]["in_channels"]  # the demo's stage-1 ResNet-18: 64
    assert pooled_NC.shape == (5, width) and pooled_NC.dtype == np.float32
    assert (demo_scores.feature_dim, demo_pooled.feature_dim) == (400, width)
    assert demo_scores.extract(clips_NTHWC[:0]).shape == (0, 400)


def test_same_seed_same_weights_other_seed_other_weights(demo_pooled):
    clips_NTHWC = random_clips(3, 1, 56)
    again = FeatureExtractor(ExtractorConfig(model=TSN_R18_DEMO, output="pooled"))
    other = FeatureExtractor(ExtractorConfig(model=TSN_R18_DEMO, output="pooled"), seed=1)
    np.testing.assert_array_equal(demo_pooled.extract(clips_NTHWC), again.extract(clips_NTHWC))
    assert not np.allclose(demo_pooled.extract(clips_NTHWC), other.extract(clips_NTHWC))


def test_pooled_max_is_the_spatial_max_of_the_backbone_map(demo_pooled):
    """``pooled_max`` keeps the strongest response anywhere in the frame (a small object's),
    where ``pooled`` averages it away."""
    maxed = FeatureExtractor(ExtractorConfig(model=TSN_R18_DEMO, output="pooled_max"))
    clips_NTHWC = random_clips(3, 1, 64)
    x_NCHW = (torch.from_numpy(clips_NTHWC[:, 0]).float() - maxed.mean_C) / maxed.std_C
    with torch.inference_mode():
        fmap = maxed.model.backbone(x_NCHW.permute(0, 3, 1, 2).contiguous())
    expected_NC = fmap.amax(dim=(2, 3)).numpy()
    np.testing.assert_allclose(maxed.extract(clips_NTHWC), expected_NC, rtol=1e-5, atol=1e-6)
    assert maxed.feature_dim == demo_pooled.feature_dim
    assert (maxed.extract(clips_NTHWC) >= demo_pooled.extract(clips_NTHWC) - 1e-6).all()


def test_batching_does_not_change_features(demo_scores):
    """Snippets of several videos concatenated (7, forwarded as 3 + 3 + 1) == each video on
    its own (3; 4 as 3 + 1) == one snippet at a time."""
    video_a, video_b = random_clips(3, 1, 56, seed=1), random_clips(4, 1, 56, seed=2)
    together = demo_scores.extract(np.concatenate([video_a, video_b]))
    apart = np.concatenate([demo_scores.extract(video_a), demo_scores.extract(video_b)])
    singles = np.concatenate([demo_scores.extract(video_b[i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(together, apart, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(together[3:], singles, rtol=1e-4, atol=1e-7)


def test_tsn_pools_a_snippets_frames_as_its_consensus(demo_pooled):
    clips_NTHWC = random_clips(2, 3, 56)
    per_frame = [demo_pooled.extract(clips_NTHWC[:, [t]]) for t in range(3)]
    np.testing.assert_allclose(
        demo_pooled.extract(clips_NTHWC), np.mean(per_frame, axis=0), rtol=1e-4, atol=1e-6
    )


def mmaction_predict_scores(model: torch.nn.Module, clips_NTHWC: np.ndarray, is_3d: bool):
    """Class scores the MMAction2 way: data_preprocessor + test_step (one sample per snippet)."""
    from mmaction.structures import ActionDataSample

    inputs = []
    for clip_THWC in clips_NTHWC:
        clip = torch.from_numpy(clip_THWC).permute(0, 3, 1, 2)  # FormatShape NCHW: T C H W
        inputs.append(clip.permute(1, 0, 2, 3)[None] if is_3d else clip)  # NCTHW: 1 C T H W
    data = {"inputs": inputs, "data_samples": [ActionDataSample() for _ in inputs]}
    with torch.no_grad():
        samples = model.test_step(data)
    return np.stack([s.pred_score.numpy() for s in samples])


@pytest.mark.parametrize(
    "preset, clip_len, size",
    [(TSN_R18_DEMO, 2, 56), (TSN_R50_KINETICS400, 1, 32), (SLOWONLY_R50_8X8_KINETICS400, 4, 32)],
    ids=["tsn_r18", "tsn_r50", "slowonly_r50"],
)
def test_scores_match_mmaction2_predict(preset, clip_len, size):
    """Normalisation, layout, consensus and softmax agree with MMAction2's own test path."""
    extractor = FeatureExtractor(ExtractorConfig(model=preset, output="scores"))
    clips_NTHWC = random_clips(2, clip_len, size)
    expected_NK = mmaction_predict_scores(extractor.model, clips_NTHWC, extractor.is_3d)
    np.testing.assert_allclose(extractor.extract(clips_NTHWC), expected_NK, rtol=1e-4, atol=1e-6)


def test_r50_presets_pooled_shapes():
    tsn = FeatureExtractor(ExtractorConfig(model=TSN_R50_KINETICS400, output="pooled"))
    assert tsn.extract(random_clips(2, 1, 32)).shape == (2, 2048)
    slow = FeatureExtractor(ExtractorConfig(model=SLOWONLY_R50_8X8_KINETICS400, output="pooled"))
    assert slow.extract(random_clips(2, 8, 32)).shape == (2, 2048)


def test_checkpoint_round_trip_through_a_uri(demo_scores, tmp_path):
    clips_NTHWC = random_clips(2, 1, 56)
    state = {f"module.{k}": v for k, v in demo_scores.model.state_dict().items()}  # DDP names
    ckpt = {"state_dict": state, "meta": {"epoch": 3, "mmengine_version": "0.10.7"}}
    path = tmp_path / "tsn_r18.pth"
    torch.save(ckpt, path)
    uri = "memory://checkpoints/tsn_r18.pth"
    storage.write_bytes(uri, path.read_bytes())
    loaded = FeatureExtractor(ExtractorConfig(model=TSN_R18_DEMO, checkpoint=uri), seed=7)
    np.testing.assert_array_equal(loaded.extract(clips_NTHWC), demo_scores.extract(clips_NTHWC))


def test_checkpoint_missing_weights_is_an_error(demo_scores, tmp_path):
    state = {k: v for k, v in demo_scores.model.state_dict().items() if "cls_head" not in k}
    torch.save({"state_dict": state}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="lacks"):
        FeatureExtractor(
            ExtractorConfig(model=TSN_R18_DEMO, checkpoint=str(tmp_path / "partial.pth"))
        )


def test_config_rejects_unknown_keys_and_values():
    with pytest.raises(config.ConfigError, match="unknown key 'outptu'"):
        config.build(ExtractorConfig, {"model": TSN_R18_DEMO, "outptu": "scores"})
    with pytest.raises(ValueError):
        ExtractorConfig(model=TSN_R18_DEMO, output="logits")
    assert TSN_R18_DEMO["backbone"]["depth"] == 18  # presets are not mutated by building
    assert copy.deepcopy(TSN_R50_KINETICS400) == TSN_R50_KINETICS400


def test_real_video_to_rescaled_features(demo_scores):
    path = str(videos.require_real_videos() / "bigbuckbunny.mp4")
    cfg = SamplingConfig(short_side=64, crop_size=56, batch_size=4)
    feats = [demo_scores.extract(batch.clips_NTHWC) for batch in iter_snippets(path, cfg)]
    feats_NC = np.concatenate(feats)
    assert feats_NC.shape == (cfg.num_snippets(132), 400)
    feats_CT = rescale_features(feats_NC, num_positions=100)
    assert feats_CT.shape == (400, 100) and np.isfinite(feats_CT).all()


def test_runs_without_mmcv_ops():
    """On the GPU image mmcv-lite stands in for mmcv: nothing on this path may need mmcv.ops."""
    code = textwrap.dedent(
        """
        import sys, importlib.abc
        class BlockOps(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name in ("mmcv.ops", "mmcv._ext") or name.startswith("mmcv.ops."):
                    raise ModuleNotFoundError(f"No module named {name!r} (mmcv-lite)")
        sys.meta_path.insert(0, BlockOps())
        import numpy as np
        from core.features import ExtractorConfig, presets
        from core.features.extractor import FeatureExtractor
        ex = FeatureExtractor(ExtractorConfig(model=presets.demo_recognizer()))
        out = ex.extract(np.zeros((2, 1, 32, 32, 3), np.uint8))
        assert out.shape == (2, 400), out.shape
        assert "mmcv.ops" not in sys.modules
        print("ok")
        """
    )
    repo = pathlib.Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=repo
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


class MessageHub:
    """A Python object in a checkpoint's meta, as MMEngine writes them."""

    epoch = 3


def test_checkpoint_needing_pickle_is_refused_unless_allowed(demo_scores, tmp_path):
    from core.io.checkpoint import UnsafeCheckpointError

    meta = MessageHub()  # like MMEngine's message_hub in its checkpoints: needs full unpickling
    torch.save({"state_dict": demo_scores.model.state_dict(), "meta": meta}, tmp_path / "m.pth")
    uri = str(tmp_path / "m.pth")
    with pytest.raises(UnsafeCheckpointError, match="allow_pickle"):
        FeatureExtractor(ExtractorConfig(model=TSN_R18_DEMO, checkpoint=uri))
    loaded = FeatureExtractor(
        ExtractorConfig(model=TSN_R18_DEMO, checkpoint=uri), allow_pickle=True
    )
    clips_NTHWC = random_clips(2, 1, 56)
    np.testing.assert_array_equal(loaded.extract(clips_NTHWC), demo_scores.extract(clips_NTHWC))
