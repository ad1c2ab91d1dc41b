"""BMN's boundary-matching stage (sampling + Conv3d + ReLU) as two dense GEMMs.

MMAction2's BMN computes, for every candidate proposal (duration d, start s), N sample features
by linear interpolation and mixes them with a Conv3d whose kernel spans the N samples::

    bm_BCNDT = (feats_BCT @ sample_mask_T_NDT).reshape(B, C, N, D, T)   # 16 GFLOP per sample
    out_BODT = relu(Conv3d(C, O, kernel=(N, 1, 1))(bm_BCNDT))            # 84 GFLOP per sample

Both steps are linear, so they can run in the other order: first project the channels with
the Conv3d's weights for each sample n (a 1x1 convolution to O·N channels), then contract the
(sample, position) axis with the sample mask, only for the T(T+1)/2 cells where s + d < T:

    y_BOK = (weight_ON_C @ feats_BCT)                   # K = N·T; 0.8 GFLOP per sample
    out_BOV = y_BO_K @ mask_KV                          # 16.5 GFLOP per sample
    out_BODT = relu(scatter(out_BOV) + bias_O)          # cells with s + d >= T hold relu(bias)

Same result in exact arithmetic; in fp32 the sums run in another order (differences ~1e-6
relative). No Conv3d runs, so nothing here can hit the cuDNN Conv3d stall seen under bf16
autocast, and no (B, C, N, D, T) tensor (330 MB per sample in fp32) is ever made.

The Conv3d's parameters stay where MMAction2 keeps them (``x_3d_p.0.weight``/``bias``) and are
passed in, so checkpoints interchange. :func:`interp1d_sample_mask` builds MMAction2's sample
mask bit for bit, vectorised (the upstream Python loops take seconds at T = 100).

Shape legend:
    B: batch; C: input channels (BMN's hidden_dim_1d); T: temporal positions, also the start
    index s of a proposal; D: duration index d (proposal covers positions s..s+d, D == T);
    N: samples per proposal (num_samples); O: output channels (hidden_dim_3d);
    K: merged (sample, position) axis, K = N·T, index n·T + t;
    V: valid (duration, start) cells with s + d < T, in row-major (d, s) order (``mask_KV``
       has zero columns beyond them: at least one, up to a multiple of 8; Vpad columns in all);
    X: all (duration, start) cells, X = D·T, index d·T + s.
    Underscores split a name's axes where one axis merges several: ``y_B_ON_T`` is
    (B, O·N, T), ``mask_T_NDT`` is (T, N·D·T).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def interp1d_sample_mask(
    temporal_dim: int, boundary_ratio: float, num_samples: int, num_samples_per_bin: int
) -> torch.Tensor:
    """MMAction2's ``BMN.sample_mask``, equal bit for bit, built without Python loops.

    Mirrors ``BMN._get_interp1d_mask`` / ``_get_interp1d_bin_mask`` (mmaction2 1.2.0): the
    proposal (start s, duration d) is widened by ``boundary_ratio`` of its length on both
    sides, N·bins points are spread evenly over it, each point interpolates its two
    neighbouring positions (``math.modf`` truncation and ``math.ceil`` as upstream, so a point
    in (-1, 0) lands on position 0), and each of the N samples averages its bins.

    Returns:
        mask_T_NDT: float32 (T, N·D·T), index [t, (n·D + d)·T + s], as upstream.
    """
    T, N, bins = temporal_dim, num_samples, num_samples_per_bin
    mask_TNDS = np.zeros((T, N, T, T), dtype=np.float32)
    n_points = N * bins
    for d in range(T):
        s_S = np.arange(T - d)  # starts with s + d < T
        center_len = float(d) + 1
        tmin_S = s_S - center_len * boundary_ratio
        tmax_S = (s_S + d) + center_len * boundary_ratio
        step_S = (tmax_S - tmin_S) / (n_points - 1.0)
        points_SP = tmin_S[:, None] + step_S[:, None] * np.arange(n_points)
        upper_SP = np.ceil(points_SP)
        frac_SP, down_SP = np.modf(points_SP)
        # contributions per (s, n) in upstream order: bin k's lower then upper neighbour
        pos_SNC = np.stack([down_SP, upper_SP], -1).reshape(len(s_S), N, 2 * bins)
        val_SNC = np.stack([1 - frac_SP, frac_SP], -1).reshape(len(s_S), N, 2 * bins)
        keep_SNC = (pos_SNC >= 0) & (pos_SNC <= T - 1)
        acc_SNT = np.zeros((len(s_S), N, T), dtype=np.float64)
        s_idx, n_idx, _ = np.nonzero(keep_SNC)
        # np.add.at is unbuffered and runs in index order, like the upstream += loop
        np.add.at(acc_SNT, (s_idx, n_idx, pos_SNC[keep_SNC].astype(np.int64)), val_SNC[keep_SNC])
        acc_SNT = 1.0 / bins * acc_SNT
        mask_TNDS[:, :, d, : T - d] = acc_SNT.transpose(2, 1, 0).astype(np.float32)
    return torch.from_numpy(mask_TNDS.reshape(T, N * T * T))


def valid_cells(temporal_dim: int) -> torch.Tensor:
    """Flat (d·T + s) indices of the cells with s + d < T, in row-major order.

    Returns:
        valid_V: int64 (V,), V = T(T+1)/2.
    """
    T = temporal_dim
    d_DT, s_DT = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    return torch.nonzero((d_DT + s_DT < T).flatten()).squeeze(1)


class BoundaryMatchingConv(nn.Module):
    """Sampling + Conv3d + ReLU of BMN's boundary-matching stage, as two GEMMs.

    Holds the sample mask reordered for the second GEMM as non-persistent buffers (they
    never enter a state_dict and are rebuilt from MMAction2's ``sample_mask``); the Conv3d's
    weight and bias are arguments so that they stay in the model under MMAction2's names.

    Args:
        sample_mask_T_NDT: MMAction2's sample mask, (T, N·D·T).
        temporal_dim: T.
        num_samples: N.
    """

    mask_KV: torch.Tensor
    valid_V: torch.Tensor
    source_X: torch.Tensor
    invalid_X: torch.Tensor
    channels_last = False
    """Give the output in channels-last memory: the second GEMM transposed, so that the
    (B, O, D, T) result lies as (B, D, T, O), the layout in which the bf16 convolutions of
    ``x_2d_p`` (given channels-last weights) run without layout conversions on CUDA (1.5x the
    training step on an H200). Same values, sums in another order."""
    fused_epilogue = False
    """In channels-last, add the bias and apply the ReLU inside the GEMM (cuBLASLt's epilogue)
    and place the cells with one gather (:class:`_BoundaryMatchingGemm`), instead of a zeroed
    map, a scatter, a bias add and a ReLU over the whole (B, D, T, O) map. Off until measured
    faster: its first form, whose backward GEMM contracted over the 5,050 valid cells (an
    unaligned cuBLAS kernel, 1.2 ms), ran the captured step 0.93x on an H100; this one
    contracts over the padded cells (``benchmarks/train.py``'s ``graph_fused_bm``)."""
    batched_projection = False
    """In channels-last, project the channels (the first GEMM) as a batched GEMM over the
    videos with the weight broadcast: it writes (B, O·N, T) in the layout the second GEMM
    reads, where ``torch.matmul`` folds the batch into one GEMM whose (B, T, O·N) result is
    copied into that layout, and its gradient copied back (0.31 ms of a 5.5 ms step on an
    H100). Off until measured (``graph_fused_bm`` against ``graph_fused_bm_matmul_projection``
    in ``benchmarks/train.py``)."""

    def __init__(self, sample_mask_T_NDT: torch.Tensor, temporal_dim: int, num_samples: int):
        super().__init__()
        self.temporal_dim = temporal_dim
        self.num_samples = num_samples
        valid_V = valid_cells(temporal_dim)
        V, X = valid_V.shape[0], temporal_dim * temporal_dim
        # each cell's row of the padded GEMM output: its own, or the first padded row (V),
        # which holds relu(bias) (zero mask column), as every cell with s + d >= T does
        source_X = torch.full((X,), V, dtype=torch.int64)
        source_X[valid_V] = torch.arange(V)
        self.register_buffer("valid_V", valid_V, persistent=False)
        self.register_buffer("source_X", source_X, persistent=False)
        self.register_buffer("invalid_X", (source_X == V).float(), persistent=False)
        self.register_buffer("mask_KV", torch.empty(0), persistent=False)
        self.set_sample_mask(sample_mask_T_NDT)

    @torch.no_grad()
    def set_sample_mask(self, sample_mask_T_NDT: torch.Tensor) -> None:
        """(Re)builds ``mask_KV`` from MMAction2's (T, N·D·T) sample mask."""
        T, N = self.temporal_dim, self.num_samples
        mask_TNX = sample_mask_T_NDT.detach().reshape(T, N, T * T)
        mask_KX = mask_TNX.transpose(0, 1).reshape(N * T, T * T)
        device = self.valid_V.device
        mask_KV = mask_KX.to(device).index_select(1, self.valid_V)
        # zero columns up to a multiple of 8 (rows of 16-byte multiples in bf16, which the
        # GEMMs need for Hopper's tensor-core kernels; T = 100 gives V = 5050), at least one:
        # the fused GEMM's first padded row is the relu(bias) of the cells with s + d >= T
        pad = 8 - mask_KV.shape[1] % 8
        self.mask_KV = F.pad(mask_KV, (0, pad)).contiguous()

    def forward(
        self, feats_BCT: torch.Tensor, weight_OCN11: torch.Tensor, bias_O: torch.Tensor | None
    ) -> torch.Tensor:
        """Boundary-matching features for every (duration, start) cell.

        Args:
            feats_BCT: features after BMN's ``x_1d_p``.
            weight_OCN11: the Conv3d weight, (O, C, N, 1, 1).
            bias_O: the Conv3d bias or None.

        Returns:
            out_BODT: ``relu(Conv3d(sampled))`` as MMAction2's ``x_3d_p(...).squeeze(2)``.
        """
        B, C, T = feats_BCT.shape
        n_out, N = weight_OCN11.shape[0], self.num_samples
        weight_ON_C = weight_OCN11.reshape(n_out, C, N).transpose(1, 2).reshape(n_out * N, C)
        if self.channels_last and self.batched_projection:
            # (B, O·N, T) as the GEMMs write it: no copy into the second GEMM's layout
            weight_ON_C = weight_ON_C.to(feats_BCT.dtype)  # cast once, then broadcast
            y_B_ON_T = torch.bmm(weight_ON_C.expand(B, -1, -1), feats_BCT)
        else:
            y_B_ON_T = torch.matmul(weight_ON_C, feats_BCT)  # (B, O·N, T), i.e. (B, O, K)
        mask_KV = self.mask_KV.to(y_B_ON_T.dtype)
        y_BO_K = y_B_ON_T.reshape(B * n_out, N * T)
        if self.channels_last and self.fused_epilogue:
            if bias_O is None:
                bias_O = y_BO_K.new_zeros(n_out)
            out_BXO = _BoundaryMatchingGemm.apply(
                y_BO_K, bias_O, mask_KV, self.source_X, self.valid_V, self.invalid_X, B
            )
            return out_BXO.view(B, T, T, n_out).permute(0, 3, 1, 2)
        if self.channels_last:
            return self._channels_last(y_BO_K, mask_KV, bias_O, B)
        out_BO_V = torch.matmul(y_BO_K, mask_KV)
        out_BOX = out_BO_V.new_zeros(B, n_out, T * T)
        V = self.valid_V.shape[0]
        out_BOX.index_copy_(2, self.valid_V, out_BO_V.view(B, n_out, -1)[:, :, :V])
        if bias_O is not None:
            out_BOX.add_(bias_O.to(out_BOX.dtype).view(1, n_out, 1))
        return F.relu(out_BOX.view(B, n_out, T, T), inplace=True)

    def _channels_last(
        self, y_BO_K: torch.Tensor, mask_KV: torch.Tensor, bias_O: torch.Tensor | None, B: int
    ) -> torch.Tensor:
        """:meth:`forward`'s result in channels-last memory, unfused (see
        :attr:`fused_epilogue`)."""
        T, n_out = self.temporal_dim, y_BO_K.shape[0] // B
        V = self.valid_V.shape[0]
        out_V_BO = torch.mm(mask_KV.t(), y_BO_K.t())[:V]  # one GEMM of transposed views
        out_BXO = out_V_BO.new_zeros(B, T * T, n_out)
        out_BXO.index_copy_(1, self.valid_V, out_V_BO.view(-1, B, n_out).transpose(0, 1))
        if bias_O is not None:
            out_BXO.add_(bias_O.to(out_BXO.dtype))
        return F.relu(out_BXO, inplace=True).view(B, T, T, n_out).permute(0, 3, 1, 2)


class _BoundaryMatchingGemm(torch.autograd.Function):
    """``relu(mask_KV.T @ y_BO_K.T + bias)`` placed on the (duration, start) grid, channels
    last, with a hand-written backward.

    Forward: one GEMM with cuBLASLt's bias + ReLU epilogue (``torch._addmm_activation``,
    which autograd does not differentiate) gives (Vpad, B·O), whose first padded row is
    relu(bias); one gather lays its rows out as (B, X, O), the cells with s + d >= T taking
    that row. Backward: the valid cells' gradient gathered (no scatter-add onto the shared
    padded row), the ReLU's mask from the saved output, the GEMM for ``y``, and the bias's
    gradient as the valid rows' sum plus the other cells' (one GEMV over the map) where
    relu(bias) passed it.
    """

    @staticmethod
    def forward(ctx, y_BO_K, bias_O, mask_KV, source_X, valid_V, invalid_X, B):
        n_out = y_BO_K.shape[0] // B
        bias_BO = bias_O.to(y_BO_K.dtype).repeat(B)
        out_Vp_BO = torch._addmm_activation(bias_BO, mask_KV.t(), y_BO_K.t())
        out_BXO = out_Vp_BO.view(-1, B, n_out).transpose(0, 1).index_select(1, source_X)
        ctx.save_for_backward(out_Vp_BO, mask_KV, valid_V, invalid_X, bias_O)
        ctx.B = B
        return out_BXO

    @staticmethod
    def backward(ctx, grad_BXO):
        out_Vp_BO, mask_KV, valid_V, invalid_X, bias_O = ctx.saved_tensors
        B, V = ctx.B, valid_V.shape[0]
        n_out = out_Vp_BO.shape[1] // B
        grad_BXO = grad_BXO.contiguous()
        # the valid cells' gradient in the GEMM's (Vpad, B·O) rows, zero in the padded ones:
        # the GEMM for y then contracts over Vpad, a multiple of 8 (over V = 5050 cuBLAS fell
        # back to an unaligned kernel, 4x slower on an H100)
        grad_Vp_BO = grad_BXO.new_empty(out_Vp_BO.shape)
        grad_Vp_BO[V:].zero_()
        grad_V_BO = grad_Vp_BO[:V]
        torch.index_select(grad_BXO.transpose(0, 1), 0, valid_V, out=grad_V_BO.view(V, B, n_out))
        torch.ops.aten.threshold_backward.grad_input(
            grad_V_BO, out_Vp_BO[:V], 0, grad_input=grad_V_BO
        )
        grad_y = None
        if ctx.needs_input_grad[0]:
            grad_y = torch.mm(grad_Vp_BO.t(), mask_KV.t())  # (B·O, K)
        grad_bias = None
        if ctx.needs_input_grad[1]:
            # cells with s + d >= T: one relu(bias) each, passing gradient where bias > 0
            acc = torch.promote_types(grad_BXO.dtype, torch.float32)  # sums in fp32 at least
            rest_BO = torch.matmul(invalid_X.to(grad_BXO.dtype), grad_BXO)  # (B, O)
            rest_O = rest_BO.to(acc).sum(0) * (bias_O > 0)
            valid_O = grad_V_BO.sum(0, dtype=acc).view(B, n_out).sum(0)
            grad_bias = (valid_O + rest_O).to(bias_O.dtype)
        return grad_y, grad_bias, None, None, None, None, None
