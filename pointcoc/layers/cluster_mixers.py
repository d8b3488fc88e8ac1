"""Token mixers built on the context-cluster operator.

They differ only in how they form point sets and centers: :class:`RegionClusterMixer` partitions an
image grid into regions and proposes pooled grid centers (the official image ``Cluster``);
:class:`GroupClusterMixer` takes kNN groups of a point cloud with the group mean as the single center
(the official point ``ContextCluster``); :class:`SetClusterMixer` clusters a whole point cloud around centers
pooled over spatial groups (farthest-point anchors and their neighbours). The clustering itself is
:func:`pointcoc.cluster.context_cluster`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..cluster import (
    context_cluster,
    fold_regions,
    grid_centers,
    grid_to_points,
    padded_to_folds,
    points_to_grid,
    unfold_regions,
)
from ..cluster.op import Aggregation, ClusterResult, check_aggregation
from ..ops import gather_points


class ClusterMixer(nn.Module):
    """Learnable similarity scale/shift, head splitting, and optional capture of the assignment.

    Set ``record_assignment = True`` to keep the last forward's :class:`ClusterResult` (assignment and
    similarity, heads folded into the batch as ``(batch, head, region)``) in ``last_result`` for
    visualisation, without recomputing the clustering. ``aggregation`` is the operator's normaliser
    (``"similarity"`` or ``"count"``); it belongs to the weights, so loaders set it with the weights.

    ``cluster_op`` is the operator the mixer calls: :func:`pointcoc.cluster.context_cluster`, or any function
    of the same signature (benchmarks set :func:`pointcoc.cluster.reference.context_cluster_naive`).
    """

    def __init__(self, heads: int, head_dim: int, aggregation: Aggregation = "similarity") -> None:
        super().__init__()
        check_aggregation(aggregation)
        self.heads = heads
        self.head_dim = head_dim
        self.aggregation = aggregation
        self.sim_alpha = nn.Parameter(torch.ones(1))
        self.sim_beta = nn.Parameter(torch.zeros(1))
        self.record_assignment = False
        self.last_result: ClusterResult | None = None
        self.cluster_op = context_cluster

    def cluster(self, points, values, centers, value_centers) -> torch.Tensor:
        result = self.cluster_op(
            points, values, centers, value_centers, self.sim_alpha, self.sim_beta, self.aggregation
        )
        if self.record_assignment:
            self.last_result = ClusterResult(
                result.out.detach(), result.assignment, result.similarity.detach()
            )
        return result.out


@contextmanager
def recording(mixers: Iterable[ClusterMixer]) -> Iterator[None]:
    """Have ``mixers`` keep their last :class:`ClusterResult` inside the ``with``; afterwards their flags are
    restored and what they kept is dropped."""
    mixers = list(mixers)
    previous = [mixer.record_assignment for mixer in mixers]
    for mixer in mixers:
        mixer.record_assignment = True
    try:
        yield
    finally:
        for mixer, was in zip(mixers, previous):
            mixer.record_assignment = was
            mixer.last_result = None


class RegionClusterMixer(ClusterMixer):
    """Context clustering of an image feature map ``[B, C, H, W]`` (official ``Cluster``).

    ``proposal_*``/``fold_*`` follow the official naming: ``*_w`` is dim 2 and ``*_h`` dim 3 of the map.
    Regions are used only when both folds exceed 1, as in the official code.

    A map whose sides are not multiples of the folds (the official code rejects it) is handled by
    zero-padding the ``f`` and ``v`` projections at the bottom/right to :meth:`padded_size` and cropping
    the result back. Divisible sizes are untouched (exact official parity). Zero features have cosine 0
    with every center and leave the direction of the pooled similarity centers unchanged, and zero values
    add nothing to the aggregates; padded points still add ``sigmoid(beta)`` to the denominator of the
    center they join and scale down the pooled value centers of edge windows, so outputs in regions that
    touch the padding differ slightly from clustering their real points alone.
    """

    def __init__(
        self,
        dim: int,
        out_dim: int | None = None,
        proposal_w: int = 2,
        proposal_h: int = 2,
        fold_w: int = 2,
        fold_h: int = 2,
        heads: int = 4,
        head_dim: int = 24,
        aggregation: Aggregation = "similarity",
    ) -> None:
        super().__init__(heads, head_dim, aggregation)
        inner = heads * head_dim
        self.f = nn.Conv2d(dim, inner, kernel_size=1)
        self.v = nn.Conv2d(dim, inner, kernel_size=1)
        self.proj = nn.Conv2d(inner, out_dim or dim, kernel_size=1)
        self.proposals = (proposal_w, proposal_h)
        self.folds = (fold_w, fold_h) if fold_w > 1 and fold_h > 1 else (1, 1)

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        """Size an ``h x w`` map is clustered at: rounded up to multiples of the folds."""
        return padded_to_folds((h, w), self.folds)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        x = x.reshape(b * self.heads, self.head_dim, h, w)
        if self.folds == (1, 1):
            return x
        ph, pw = self.padded_size(h, w)
        if (ph, pw) != (h, w):
            x = F.pad(x, (0, pw - w, 0, ph - h))
        return fold_regions(x, self.folds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        feats, values = self._split(self.f(x)), self._split(self.v(x))
        out = self.cluster(
            grid_to_points(feats),
            grid_to_points(values),
            grid_centers(feats, self.proposals),
            grid_centers(values, self.proposals),
        )
        out = points_to_grid(out, feats.shape[-2:])
        if self.folds != (1, 1):
            out = unfold_regions(out, self.folds)[..., :h, :w]
        return self.proj(out.reshape(b, self.heads * self.head_dim, h, w))


class LinearClusterMixer(ClusterMixer):
    """Channels-last mixers: ``f``/``v`` projections into ``heads`` heads, ``proj`` back to ``dim``.

    :meth:`split_heads` folds the heads of ``[..., N, heads * head_dim]`` into the batch as
    ``[(..., head), N, head_dim]``, the layout :func:`pointcoc.cluster.context_cluster` takes;
    :meth:`merge_heads` undoes it.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, aggregation: Aggregation = "similarity") -> None:
        super().__init__(heads, head_dim, aggregation)
        inner = heads * head_dim
        self.f = nn.Linear(dim, inner)
        self.v = nn.Linear(dim, inner)
        self.proj = nn.Linear(inner, dim)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-2]
        return x.reshape(-1, n, self.heads, self.head_dim).transpose(1, 2).reshape(-1, n, self.head_dim)

    def merge_heads(self, x: torch.Tensor, lead: torch.Size) -> torch.Tensor:
        n = x.shape[-2]
        return x.reshape(-1, self.heads, n, self.head_dim).transpose(1, 2).reshape(*lead, n, -1)


class GroupClusterMixer(LinearClusterMixer):
    """Context clustering inside kNN groups ``[B, G, K, C]`` with the group mean as the one center.

    Residual, as in the official point block: returns ``x + proj(cluster(x))``.
    """

    def __init__(
        self, dim: int, heads: int = 1, head_dim: int | None = None, aggregation: Aggregation = "similarity"
    ) -> None:
        super().__init__(dim, heads, head_dim or max(dim // 4, 32), aggregation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats, values = self.split_heads(self.f(x)), self.split_heads(self.v(x))
        out = self.cluster(feats, values, feats.mean(1, keepdim=True), values.mean(1, keepdim=True))
        return x + self.proj(self.merge_heads(out, x.shape[:2]))


class SetClusterMixer(LinearClusterMixer):
    """Context clustering of a whole point set ``[B, N, C]`` around centers pooled over point groups.

    ``groups [B, M, K]`` (indices into the N points) proposes the M centers: each center, and its value,
    is the mean of its group's projected features, as the image mixer pools grid windows. Groups are
    usually spatial (a farthest-point anchor and its nearest neighbours), so the centers start local while
    the assignment, by feature similarity, is free to join distant points. Returns ``proj(cluster(x))``.
    """

    def __init__(
        self, dim: int, heads: int = 4, head_dim: int = 16, aggregation: Aggregation = "similarity"
    ) -> None:
        super().__init__(dim, heads, head_dim, aggregation)

    def forward(self, x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        feats, values = self.f(x), self.v(x)
        out = self.cluster(
            self.split_heads(feats),
            self.split_heads(values),
            self.split_heads(gather_points(feats, groups).mean(2)),
            self.split_heads(gather_points(values, groups).mean(2)),
        )
        return self.proj(self.merge_heads(out, x.shape[:1]))
