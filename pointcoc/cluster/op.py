"""The context-cluster operator: the one place where its math lives.

For each point n with similarity features ``p_n`` and value ``v_n``, and centers ``c_m`` with
values ``w_m`` (all proposed by the caller):

    s_nm   = sigmoid(beta + alpha * cos(c_m, p_n))
    m(n)   = argmax_m s_nm                    (hard assignment; the gradient flows through s_n m(n))
    s_n    = s_n m(n)
    g_m    = (sum_{n: m(n)=m} s_n v_n + w_m) / (sum_{n: m(n)=m} s_n + 1)
    out_n  = s_n * g_m(n)

The official code materialises ``[batch, centers, points, dim]`` products to do this; here the
aggregation is a scatter-add and the dispatch a gather, so memory stays ``O(points * dim)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class ClusterResult(NamedTuple):
    out: torch.Tensor  # [B, N, E] dispatched features
    assignment: torch.Tensor  # [B, N] index of each point's center
    similarity: torch.Tensor  # [B, N] sigmoid similarity to that center


def check_cluster_inputs(
    points: torch.Tensor, values: torch.Tensor, centers: torch.Tensor, value_centers: torch.Tensor
) -> None:
    if points.dim() != 3:
        raise ValueError(f"points must have shape [B, N, D], got {list(points.shape)}")
    b, n, d = points.shape
    e = values.shape[-1] if values.dim() == 3 else -1
    m = centers.shape[1] if centers.dim() == 3 else -1
    for name, t, want in (
        ("values", values, (b, n, e)),
        ("centers", centers, (b, m, d)),
        ("value_centers", value_centers, (b, m, e)),
    ):
        if t.dim() != 3 or tuple(t.shape) != want or min(want) < 1:
            expected = {"values": "[B, N, E]", "centers": "[B, M, D]", "value_centers": "[B, M, E]"}[name]
            raise ValueError(
                f"{name} must have shape {expected} = {[b, n, 'E'] if name == 'values' else list(want)} "
                f"given points {list(points.shape)}, got {list(t.shape)}"
            )


def cosine_similarity_to_centers(points: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """``[B, N, M]`` cosine similarities; ``F.normalize``'s eps (1e-12) as in the official code.

    At least float32, also under autocast: bf16 cosines flip near-tied assignments, and in fp16 the
    normalisation eps underflows so a zero feature vector would divide by zero.
    """
    dtype = torch.promote_types(points.dtype, torch.float32)
    with torch.autocast(points.device.type, enabled=False):
        unit_points = F.normalize(points.to(dtype), dim=-1)
        unit_centers = F.normalize(centers.to(dtype), dim=-1)
        return torch.bmm(unit_points, unit_centers.transpose(1, 2))


def context_cluster(
    points: torch.Tensor,
    values: torch.Tensor,
    centers: torch.Tensor,
    value_centers: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor,
) -> ClusterResult:
    """Cluster ``points [B, N, D]`` around ``centers [B, M, D]`` and dispatch aggregated ``values [B, N, E]``.

    ``value_centers [B, M, E]`` are the centers' own values (e.g. pooled like the centers);
    ``alpha``/``beta`` are the learnable scalars of the similarity. Heads and regions are folded
    into B by the caller.
    """
    check_cluster_inputs(points, values, centers, value_centers)
    sim_all = torch.sigmoid(beta + alpha * cosine_similarity_to_centers(points, centers))
    sim, assignment = sim_all.max(dim=-1)  # gradient reaches only the chosen similarity
    sim = sim.to(values.dtype)

    index = assignment.unsqueeze(-1).expand_as(values)
    weighted = values * sim.unsqueeze(-1)
    numerator = value_centers.scatter_add(1, index, weighted)
    denominator = torch.ones_like(value_centers[..., 0]).scatter_add(1, assignment, sim)
    aggregated = numerator / denominator.unsqueeze(-1)
    out = aggregated.gather(1, index) * sim.unsqueeze(-1)
    return ClusterResult(out, assignment, sim)
