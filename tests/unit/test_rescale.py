"""core.features.rescale: known answers and parity with MMAction2's ``pool_feature``."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

from core.features.rescale import EPS, rescale_features, sample_points


def _upstream_pool_feature():
    """``pool_feature`` from the installed mmaction2 (its ``.mim`` copy of tools/), if any."""
    spec = importlib.util.find_spec("mmaction")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = pathlib.Path(list(spec.submodule_search_locations)[0])
    path = root / ".mim/tools/data/activitynet/activitynet_feature_postprocessing.py"
    if not path.exists():
        return None
    module_spec = importlib.util.spec_from_file_location("anet_feature_post", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)  # imports mmengine and scipy only
    return module.pool_feature


def test_constant_features_stay_constant():
    feats_NC = np.tile(np.array([[1.5, -2.0, 7.0]]), (37, 1))
    out_CT = rescale_features(feats_NC, num_positions=100)
    assert out_CT.shape == (3, 100) and out_CT.dtype == np.float32
    np.testing.assert_allclose(out_CT, np.tile(feats_NC[:1].T, (1, 100)), rtol=1e-6)


def test_linear_ramp_gives_bin_means():
    """f(x) = x: each position averages x at start + (t + i/3) w, i = 0..2, i.e. + w/3."""
    n, t = 11, 4
    feats_NC = np.arange(n, dtype=np.float64)[:, None] * np.array([[1.0, -2.0]])
    width = (n - 1 - 2 * EPS) / t
    expected_T = EPS + (np.arange(t) + 1 / 3) * width
    out_CT = rescale_features(feats_NC, num_positions=t)
    np.testing.assert_allclose(out_CT[0], expected_T, rtol=1e-6)
    np.testing.assert_allclose(out_CT[1], -2 * expected_T, rtol=1e-6)


def test_max_pool_of_ramp_takes_last_sample():
    n, t = 11, 4
    feats_NC = np.arange(n, dtype=np.float64)[:, None]
    width = (n - 1 - 2 * EPS) / t
    out_CT = rescale_features(feats_NC, num_positions=t, pool_type="max")
    np.testing.assert_allclose(out_CT[0], EPS + (np.arange(t) + 2 / 3) * width, rtol=1e-6)


def test_one_snippet_is_repeated():
    feats_NC = np.array([[3.0, 4.0]])
    out_CT = rescale_features(feats_NC, num_positions=5)
    np.testing.assert_array_equal(out_CT, [[3.0] * 5, [4.0] * 5])


def test_fewer_snippets_than_positions_interpolate_between_neighbours():
    feats_NC = np.array([[0.0], [10.0]])  # two snippets, upsampled to 8 positions
    out_CT = rescale_features(feats_NC, num_positions=8)
    assert out_CT.shape == (1, 8)
    assert np.all(np.diff(out_CT[0]) > 0)
    assert 0.0 < out_CT[0, 0] < out_CT[0, -1] < 10.0


def test_sample_points_stay_inside_the_snippet_axis():
    x_TS = sample_points(num_snippets=3, num_positions=100, num_sample_bins=3)
    assert x_TS.shape == (100, 3)
    assert x_TS.min() >= EPS - 1e-12 and x_TS.max() < 2.0


@pytest.mark.parametrize("n", [2, 3, 50, 100, 101, 733])
@pytest.mark.parametrize("pool_type", ["mean", "max"])
def test_matches_mmaction2_pool_feature(n, pool_type):
    pool_feature = _upstream_pool_feature()
    if pool_feature is None:
        pytest.skip("mmaction2's activitynet_feature_postprocessing.py is not installed")
    feats_NC = np.random.default_rng(n).normal(size=(n, 7))
    expected_TC = pool_feature(feats_NC, num_proposals=100, pool_type=pool_type)
    out_CT = rescale_features(feats_NC, num_positions=100, pool_type=pool_type)
    np.testing.assert_allclose(out_CT, expected_TC.T, rtol=1e-5, atol=1e-6)


def test_matches_mmaction2_for_one_snippet():
    pool_feature = _upstream_pool_feature()
    if pool_feature is None:
        pytest.skip("mmaction2's activitynet_feature_postprocessing.py is not installed")
    feats_NC = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(rescale_features(feats_NC), pool_feature(feats_NC).T)


@pytest.mark.parametrize("bad", [np.zeros((0, 4)), np.zeros(5), np.zeros((2, 3, 4))])
def test_rejects_bad_shapes(bad):
    with pytest.raises(ValueError):
        rescale_features(bad)
