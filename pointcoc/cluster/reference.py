"""Naive context-cluster operator, written the way the official code computes it.

It materialises ``[B, M, N, E]`` products; it exists to check :func:`pointcoc.cluster.context_cluster`
(tests) and to measure what that costs (benchmarks). Do not use it in models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .op import Aggregation, ClusterResult, check_aggregation


def context_cluster_naive(
    points: torch.Tensor,
    values: torch.Tensor,
    centers: torch.Tensor,
    value_centers: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor,
    aggregation: Aggregation = "similarity",
) -> ClusterResult:
    check_aggregation(aggregation)
    cos = F.normalize(centers, dim=-1) @ F.normalize(points, dim=-1).transpose(-2, -1)  # [B, M, N]
    sim = torch.sigmoid(beta + alpha * cos)
    _, best = sim.max(dim=1, keepdim=True)
    mask = torch.zeros_like(sim).scatter_(1, best, 1.0)
    sim = sim * mask
    # The official code after May 2023 divides by sim.sum, before it (and openmixup) by mask.sum.
    members = sim if aggregation == "similarity" else mask
    aggregated = ((values.unsqueeze(1) * sim.unsqueeze(-1)).sum(dim=2) + value_centers) / (
        members.sum(dim=-1, keepdim=True) + 1.0
    )  # [B, M, E]
    out = (aggregated.unsqueeze(2) * sim.unsqueeze(-1)).sum(dim=1)  # [B, N, E]
    return ClusterResult(out, best.squeeze(1), sim.sum(dim=1))
