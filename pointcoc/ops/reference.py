"""Naive references for the point-set ops, written for clarity and used only by tests."""

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
