"""Index a batched point set with per-batch indices of any shape."""

from __future__ import annotations

import torch


def gather_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``points [B, N, C]`` indexed by ``idx [B, *S]`` -> ``[B, *S, C]``.

    One ``torch.gather`` over a flattened index: no ``[B, *S]`` batch-index tensor is built
    (the official ``index_points`` materialises one with ``repeat``).
    """
    if points.dim() != 3:
        raise ValueError(f"points must have shape [B, N, C], got {list(points.shape)}")
    if idx.dim() < 2 or idx.shape[0] != points.shape[0]:
        raise ValueError(f"idx must have shape [B, ...] with B={points.shape[0]}, got {list(idx.shape)}")
    b, _, c = points.shape
    flat = idx.reshape(b, -1, 1).expand(-1, -1, c)
    return torch.gather(points, 1, flat).reshape(*idx.shape, c)
