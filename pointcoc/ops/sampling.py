"""Farthest point sampling (FPS)."""

from __future__ import annotations

import torch

from ..utils.checks import check_count, check_point_set
from ._backend import pytorch3d_ops, use_pytorch3d


def farthest_point_sample(points: torch.Tensor, num_samples: int, backend: str = "auto") -> torch.Tensor:
    """Indices ``[B, num_samples]`` of an FPS of ``points [B, N, D]``, starting at point 0.

    Matches the CUDA kernel the official models trained with (pointnet2_ops) and the official
    pure-torch fallback with its start fixed at 0: a running minimum of squared distances
    initialised to 1e10, the next sample being its argmax. Unlike pointnet2_ops, points with
    ``|p|^2 <= 1e-3`` are not skipped. Works for any D (images are 5-D point sets).
    """
    check_point_set("points", points)
    check_count("num_samples", num_samples, points.shape[1], "points")
    if use_pytorch3d(backend):
        _, idx = pytorch3d_ops().sample_farthest_points(points, K=num_samples, random_start_point=False)
        return idx
    return _fps_torch(points, num_samples)


def _fps_torch(points: torch.Tensor, num_samples: int) -> torch.Tensor:
    b, n, _ = points.shape
    # The loop is sequential by nature; everything inside it stays on-device with no host sync.
    pts = points.detach()
    idx = torch.zeros(b, num_samples, dtype=torch.long, device=points.device)
    min_dist = torch.full((b, n), 1e10, dtype=pts.dtype, device=points.device)
    farthest = torch.zeros(b, dtype=torch.long, device=points.device)
    rows = torch.arange(b, device=points.device)
    for i in range(num_samples):
        idx[:, i] = farthest
        centroid = pts[rows, farthest].unsqueeze(1)
        torch.minimum(min_dist, ((pts - centroid) ** 2).sum(-1), out=min_dist)
        farthest = min_dist.argmax(-1)
    return idx
