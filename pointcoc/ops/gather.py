"""Index a batched point set with per-batch indices of any shape."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..utils.checks import check_on_device


def gather_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``points [B, N, C]`` indexed by ``idx [B, *S]`` -> ``[B, *S, C]``.

    Picks whole rows of the flattened ``[B * N, C]`` table with ``index_select`` (a row copy each; its
    backward is a row-wise ``index_add``). ``torch.gather`` with an index expanded over C, the usual
    formulation, indexes every element instead: measured on CPU at PointMLP's grouping shapes (idx
    [8, 512, 24], C = 32-128, 1 thread) it was 5-25x slower forward and 2-6x slower forward+backward.
    """
    if points.dim() != 3:
        raise ValueError(f"points must have shape [B, N, C], got {list(points.shape)}")
    if idx.dim() < 2 or idx.shape[0] != points.shape[0]:
        raise ValueError(f"idx must have shape [B, ...] with B={points.shape[0]}, got {list(idx.shape)}")
    b, n, c = points.shape
    rows = points.reshape(b * n, c).index_select(0, _flat_rows(idx, n))
    return rows.view(*idx.shape, c)


def gather_points_shifted(points: torch.Tensor, idx: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``gather_points(points, idx) + shift.unsqueeze(-2)``: rows of ``points [B, N, C]`` for
    ``idx [B, S, K]``, each group of K shifted by its row of ``shift [B, S, C]``.

    One ``[B, S, K, C]`` tensor in all: the shift is added in place on the gathered rows, and the backward
    (a row-wise index-add and a sum over K) builds none. In autograd, an in-place add on the gather's
    ``[B, S, K, C]`` view would copy the whole gradient (CopySlices) and an out-of-place one allocates a
    second full-size tensor.
    """
    if (
        points.dim() != 3
        or idx.dim() != 3
        or idx.shape[0] != points.shape[0]
        or shift.shape != (*idx.shape[:2], points.shape[-1])
    ):
        raise ValueError(
            f"points must be [B, N, C], idx [B, S, K] and shift [B, S, C]; got points {list(points.shape)}, "
            f"idx {list(idx.shape)}, shift {list(shift.shape)}"
        )
    return _GatherShifted.apply(points, idx, shift)


def gather_points_sum(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``gather_points(points, idx).sum(-2)`` for ``idx [B, S, K]``: ``[B, S, C]`` sums of K rows each, as one
    ``embedding_bag`` (no ``[B, S, K, C]`` tensor, forward or backward)."""
    if points.dim() != 3 or idx.dim() != 3 or idx.shape[0] != points.shape[0]:
        raise ValueError(
            f"points must be [B, N, C] and idx [B, S, K]; got {list(points.shape)} and {list(idx.shape)}"
        )
    b, n, c = points.shape
    bags = _flat_rows(idx, n).view(-1, idx.shape[-1])
    return F.embedding_bag(bags, points.reshape(b * n, c), mode="sum").view(*idx.shape[:2], c)


class _GatherShifted(torch.autograd.Function):
    @staticmethod
    def forward(ctx, points, idx, shift):  # type: ignore[override]
        b, n, c = points.shape
        rows = _flat_rows(idx, n)
        out = points.new_empty(*idx.shape, c)
        torch.index_select(points.reshape(b * n, c), 0, rows, out=out.view(-1, c))
        out.add_(shift.unsqueeze(-2))
        ctx.save_for_backward(rows)
        ctx.points_shape = points.shape
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (rows,) = ctx.saved_tensors
        b, n, c = ctx.points_shape
        grad_points = grad.new_zeros(b * n, c).index_add_(0, rows, grad.reshape(-1, c)).view(b, n, c)
        return grad_points, None, grad.sum(-2)


def _flat_rows(idx: torch.Tensor, n: int) -> torch.Tensor:
    """Rows of ``idx [B, *S]`` in the flattened ``[B * N, C]`` table, ``[B * prod(S)]`` (range-checked)."""
    _check_in_range(idx, n)
    b = idx.shape[0]
    offsets = torch.arange(0, b * n, n, device=idx.device, dtype=idx.dtype).view(b, *(1,) * (idx.dim() - 1))
    return (idx + offsets).reshape(-1)


def _check_in_range(idx: torch.Tensor, n: int) -> None:
    """Indices must lie in [0, N): in the flattened table a bad one would read a neighbouring cloud."""
    if idx.numel() == 0:
        return
    low, high = torch.aminmax(idx)
    check_on_device(
        (low >= 0) & (high < n),
        "gather_points: idx out of range [0, N)",
        lambda: f"idx must lie in [0, {n}), got values from {int(low)} to {int(high)}",
    )
