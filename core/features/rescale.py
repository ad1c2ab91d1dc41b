"""Rescale a video's per-snippet features to a fixed number of temporal positions.

Reproduces ``pool_feature`` of MMAction2's ActivityNet feature post-processing
(``tools/data/activitynet/activitynet_feature_postprocessing.py``, mmaction2 1.2.0), which makes
the ``100 x 400`` features BMN/BSN read (``csv_mean_100``): the snippet features are a piecewise
linear function of the snippet index ``x in [0, N - 1]`` (``scipy.interpolate.interp1d``);
the span ``[eps, N - 1 - eps]`` (``eps = 1e-4``) is cut into T equal bins; in each bin
``num_sample_bins`` points ``start_t + i / num_sample_bins * bin_width`` (i = 0 ..
``num_sample_bins - 1``) are interpolated and averaged (or max-pooled). A video with one
snippet repeats it T times. Fewer snippets than T simply upsample by interpolation.

The axis is the snippet index, not time: position t of T covers snippets
``[eps + t * w, eps + (t + 1) * w]`` with ``w = (N - 1 - 2 * eps) / T``.

Shape legend: N snippets, C channels, T output positions.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-4
"""Margin that keeps the sample points inside ``[0, N - 1]`` (upstream's ``eps``)."""


def rescale_features(
    feats_NC: np.ndarray,
    num_positions: int = 100,
    num_sample_bins: int = 3,
    pool_type: str = "mean",
) -> np.ndarray:
    """Rescales per-snippet features to ``num_positions`` positions as MMAction2 does.

    Args:
        feats_NC: features of one video's snippets in temporal order, shape ``(N, C)``, N >= 1.
        num_positions: T, the output length (upstream ``num_proposals``; 100 for ActivityNet).
        num_sample_bins: points interpolated per position (upstream default 3).
        pool_type: ``"mean"`` (upstream default, what ``csv_mean_100`` used) or ``"max"``.

    Returns:
        float32 array of shape ``(C, T)``: channels first, as BMN consumes them.
    """
    feats_NC = np.asarray(feats_NC, dtype=np.float64)
    if feats_NC.ndim != 2 or feats_NC.shape[0] < 1:
        raise ValueError(f"expected (N >= 1, C) features, got shape {feats_NC.shape}")
    if num_positions < 1 or num_sample_bins < 1:
        raise ValueError("num_positions and num_sample_bins must be >= 1")
    if pool_type not in ("mean", "max"):
        raise ValueError(f"pool_type must be 'mean' or 'max', got {pool_type!r}")
    num_snippets = feats_NC.shape[0]
    if num_snippets == 1:
        return np.repeat(feats_NC.T, num_positions, axis=1).astype(np.float32)

    x_TS = sample_points(num_snippets, num_positions, num_sample_bins)
    lower_TS = np.clip(np.floor(x_TS).astype(np.int64), 0, num_snippets - 2)
    weight_TS1 = (x_TS - lower_TS)[..., None]
    values_TSC = feats_NC[lower_TS] * (1.0 - weight_TS1) + feats_NC[lower_TS + 1] * weight_TS1
    pooled_TC = values_TSC.mean(axis=1) if pool_type == "mean" else values_TSC.max(axis=1)
    return np.ascontiguousarray(pooled_TC.T, dtype=np.float32)


def sample_points(num_snippets: int, num_positions: int, num_sample_bins: int) -> np.ndarray:
    """Snippet-index coordinates sampled for each output position, shape ``(T, S)``.

    Upstream accumulates ``ptr += anchor_size``; the closed form here differs from it only in
    the last floating-point bits.
    """
    start, end = EPS, num_snippets - 1 - EPS
    width = (end - start) / num_positions
    t_T1 = np.arange(num_positions, dtype=np.float64)[:, None]
    i_1S = np.arange(num_sample_bins, dtype=np.float64)[None, :]
    return start + t_T1 * width + i_1S / num_sample_bins * width
