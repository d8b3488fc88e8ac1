"""Reference implementations of the point-set ops: naive loops written for clarity (tests), the
official pure-torch FPS loop (tests and the benchmarks that compare against the official code) and a
plain-Python transcription of pointnet2_ops' CUDA FPS kernel (tests)."""

from __future__ import annotations

import math

import numpy as np
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


def farthest_point_sample_pointnet2_kernel(points: torch.Tensor, num_samples: int) -> torch.Tensor:
    """pointnet2_ops' ``furthest_point_sampling_kernel`` (``_ext-src/src/sampling_gpu.cu``) line by line.

    Every CUDA thread of the block is run in turn (all of them see the same ``old``, so the order does not
    matter), then the shared-memory tree reduction with ``__update``. float32 arithmetic through numpy
    scalars, written without fused multiply-adds; ``mag <= 1e-3`` compares a float with a C double
    literal, so the float is widened first (numpy would narrow the literal instead).
    """
    out = []
    n = points.shape[1]
    block_size = max(min(1 << int(math.log(n) / math.log(2.0)), 512), 1)  # opt_n_threads
    for cloud in points.detach().float().numpy():
        dataset = [tuple(np.float32(c) for c in row) for row in cloud]
        temp = [np.float32(1e10)] * n
        idxs = [0] * num_samples
        old = 0
        for j in range(1, num_samples):
            dists, dists_i = [np.float32(0)] * block_size, [0] * block_size
            x1, y1, z1 = dataset[old]
            for tid in range(block_size):
                besti, best = 0, np.float32(-1)
                for k in range(tid, n, block_size):
                    x2, y2, z2 = dataset[k]
                    mag = (x2 * x2) + (y2 * y2) + (z2 * z2)
                    if float(mag) <= 1e-3:
                        continue
                    d = (x2 - x1) * (x2 - x1) + (y2 - y1) * (y2 - y1) + (z2 - z1) * (z2 - z1)
                    d2 = min(d, temp[k])
                    temp[k] = d2
                    besti = k if d2 > best else besti
                    best = d2 if d2 > best else best
                dists[tid], dists_i[tid] = best, besti
            stride = block_size // 2
            while stride >= 1:
                for tid in range(stride):  # __update(dists, dists_i, tid, tid + stride)
                    v1, v2 = dists[tid], dists[tid + stride]
                    i1, i2 = dists_i[tid], dists_i[tid + stride]
                    dists[tid] = max(v1, v2)
                    dists_i[tid] = i2 if v2 > v1 else i1
                stride //= 2
            old = dists_i[0]
            idxs[j] = old
        out.append(idxs)
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


def gather_points_sum_naive(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return gather_points_naive(points, idx).sum(-2)


def gather_points_shifted_naive(points: torch.Tensor, idx: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    return gather_points_naive(points, idx) + shift.unsqueeze(-2)
