"""Reference implementations of the point-set ops: naive loops written for clarity (tests), and the
official pure-torch FPS loop (tests and the benchmarks that compare against the official code)."""

from __future__ import annotations

import torch


def farthest_point_sample_naive(points: torch.Tensor, num_samples: int) -> torch.Tensor:
    out = []
    for cloud in points:
        chosen = [0]
        min_dist = torch.full((cloud.shape[0],), 1e10, dtype=cloud.dtype)
        for _ in range(num_samples - 1):
            last = cloud[chosen[-1]]
            for j in range(cloud.shape[0]):
                d = sum((cloud[j, c] - last[c]) ** 2 for c in range(cloud.shape[1]))
                min_dist[j] = min(min_dist[j], d)
            chosen.append(int(torch.argmax(min_dist)))
        out.append(chosen)
    return torch.tensor(out, dtype=torch.long)


def farthest_point_sample_official(xyz: torch.Tensor, npoint: int) -> torch.Tensor:
    """The official PointMLP ``farthest_point_sample`` (its fallback without pointnet2_ops), start fixed at 0.

    Line for line the official loop, allocations included, except that the official start is random
    (``torch.randint``); starting at 0 makes it comparable with :func:`pointcoc.ops.farthest_point_sample`,
    which returns the same indices.
    """
    device = xyz.device
    B, N, C = xyz.shape
    centroids = torch.zeros(B, npoint, dtype=torch.long).to(device)
    distance = torch.ones(B, N).to(device) * 1e10
    farthest = torch.zeros(B, dtype=torch.long).to(device)
    batch_indices = torch.arange(B, dtype=torch.long).to(device)
    for i in range(npoint):
        centroids[:, i] = farthest
        centroid = xyz[batch_indices, farthest, :].view(B, 1, C)
        dist = torch.sum((xyz - centroid) ** 2, -1)
        distance = torch.min(distance, dist)
        farthest = torch.max(distance, -1)[1]
    return centroids


def knn_points_naive(queries: torch.Tensor, points: torch.Tensor, k: int) -> torch.Tensor:
    out = []
    for q_set, p_set in zip(queries, points):
        rows = []
        for q in q_set:
            dists = [float(((p - q) ** 2).sum()) for p in p_set]
            rows.append(sorted(range(len(dists)), key=dists.__getitem__)[:k])
        out.append(rows)
    return torch.tensor(out, dtype=torch.long)


def gather_points_naive(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return torch.stack([points[b][idx[b]] for b in range(points.shape[0])])
