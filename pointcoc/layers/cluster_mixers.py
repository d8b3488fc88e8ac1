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
from torch.autograd.function import once_differentiable

from ..cluster import (
    aggregate_clusters,
    context_cluster,
    dispatch_to_points,
    merge_region_sets,
    padded_to_folds,
    set_centers,
    set_pool_matrix,
    split_region_sets,
)
from ..cluster.op import (
    Aggregation,
    ClusterResult,
    aggregate_backward,
    aggregate_forward,
    check_aggregation,
    dispatch_backward,
    dispatch_forward,
)
from ..ops import gather_points
from ..utils.autograd import NestedContext, grad_needed


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

    def _through_centers(self, x: torch.Tensor) -> bool:
        """Whether to take the training route that applies ``v`` and ``proj`` to the centers (subclasses):
        the same function when the normaliser makes the aggregate a weighted mean; only with the operator
        itself, and not while recording (both see the official graph's per-point values)."""
        return (
            grad_needed(x, self.v.weight)
            and self.aggregation == "similarity"
            and self.cluster_op is context_cluster
            and not self.record_assignment
        )


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


def _fused_route(x: torch.Tensor) -> bool:
    """Whether a training route runs as its one autograd function with the backward written out: not under
    autocast (its products would be cast inside, its hand-written backward would not) nor compilation
    (which traces the composed route)."""
    return not (torch.is_autocast_enabled(x.device.type) or torch.compiler.is_compiling())


def _channels_last_1x1(weight: torch.Tensor) -> torch.Tensor:
    """A 1x1 kernel ``[O, I, 1, 1]`` viewed with explicit channels-last strides.

    Its default strides are both contiguous and channels-last, so a convolution of a ``[B, C, H, W]``
    (NCHW) input computes and returns NCHW, and cutting point sets from that output reads it across
    channels. With this view the convolution computes channels-last (converting the input inside, without
    keeping a copy for backward) and the point sets are cut from contiguous rows.
    """
    o, i = weight.shape[:2]
    return weight.as_strided(weight.shape, (i, 1, i, i))


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, out_dim, H, W]`` (channels-last in memory; fastest on such an input)."""
        return self.forward_channels_last(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, H, W, C]`` -> ``[B, H, W, out_dim]``.

        The 1x1 convolutions run as matrix products over the channels (the same MACs), and the point sets
        are cut from each channels-last product in one copy, contiguous, so the operator's reductions over
        the features run along memory. (f and v as one product would be a little faster but keep both
        full-size products alive at once: a third more peak memory in this mixer.)

        Training with the ``similarity`` normaliser on a map the folds divide takes a shorter route to the
        same function (:meth:`_forward_through_centers`); evaluation, recording, other operators and other
        configurations run the official graph, whose products are the MACs counted.
        """
        b, h, w, _ = x.shape
        if self._through_centers(x) and self.padded_size(h, w) == (h, w):
            return self._forward_through_centers(x)
        x = x.permute(0, 3, 1, 2)
        feats, centers = self._point_sets(x, self.f)
        values, value_centers = self._point_sets(x, self.v)
        out = self.cluster(feats, values, centers, value_centers)
        out = merge_region_sets(out, self.heads, self.folds, self.padded_size(h, w))
        if out.shape[1:3] != (h, w):  # (a no-op slice would still cost a full-size zero-fill in backward)
            out = out[:, :h, :w]
        return self.proj(out.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    def _forward_through_centers(self, x: torch.Tensor) -> torch.Tensor:
        """The training route: ``v`` and ``proj`` on the ``M`` centers of every head instead of the points.

        The value centers are pooled ``v``, and ``v`` is affine, so each head's aggregate ``g_m`` (a weighted
        mean of values) is ``v`` of the same mean of the input points; the operator forms those means from the
        input itself, one copy shared by all heads (``groups``). Then ``v``'s and ``proj``'s rows of the head
        map each center, and the dispatch scales and sums the heads' centers into the points, whose ``proj``
        this is (linear). Two of the block's three full-size products, and its value sets, are gone. In
        float eager training it runs as one autograd function (:class:`_RegionClusterBlock`).
        """
        h, w = x.shape[1:3]
        fh, fw = self.folds
        pool = set_pool_matrix((h // fh, w // fw), self.proposals, x.dtype, x.device)  # the grid centers
        maps = (self.f.weight, self.f.bias, self.v.weight, self.v.bias, self.proj.weight, self.proj.bias)
        maps = tuple(t.flatten(1) if t.dim() > 1 else t for t in maps)  # the 1x1 kernels as matrices
        if _fused_route(x):
            return _RegionClusterBlock.apply(
                x, *maps, self.sim_alpha, self.sim_beta, self.heads, self.folds, pool
            )
        wf, bf, wv, bv, wp, bp = maps
        points = split_region_sets(x, 1, self.folds)  # [B * regions, N, C], shared by the heads
        feats = F.linear(points, wf, bf).view(*points.shape[:2], self.heads, -1)
        feats = feats.permute(2, 0, 1, 3).flatten(0, 1)  # head-major
        aggregated, assignment, similarity = aggregate_clusters(
            feats, points, None, None, self.sim_alpha, self.sim_beta, self.aggregation,
            groups=self.heads, center_pool=pool,
        )  # fmt: skip
        centers = _project_centers(aggregated, self.heads, wv, bv, wp)[1]
        out = dispatch_to_points(centers, assignment, similarity, self.heads)
        # in place on the dispatch's own product before it is viewed (autograd's CopySlices otherwise)
        return merge_region_sets(out.add_(bp), 1, self.folds, (h, w))

    def _point_sets(self, x: torch.Tensor, conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
        """``conv`` of ``x [B, H, W, C]`` as point sets ``[B * heads * regions, N, head_dim]``, and their
        grid centers ``[B * heads * regions, M, head_dim]``."""
        h, w = x.shape[2:]
        ph, pw = self.padded_size(h, w)
        y = F.conv2d(x, _channels_last_1x1(conv.weight), conv.bias).permute(0, 2, 3, 1)
        if (ph, pw) != (h, w):
            y = F.pad(y, (0, 0, 0, pw - w, 0, ph - h))
        sets = split_region_sets(y, self.heads, self.folds)
        fh, fw = self.folds
        return sets, set_centers(sets, (ph // fh, pw // fw), self.proposals)


def _project_centers(
    aggregated: torch.Tensor, heads: int, wv: torch.Tensor, bv: torch.Tensor, wp: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[(head, sets), M, C]`` input-space aggregates -> ``v``'s head rows of them ``[heads, sets * M,
    head_dim]``, and ``proj``'s head block of those, ``[(head, sets), M, out_dim]``: per head, one batched
    product over all sets' centers."""
    (bh, m, c), head_dim = aggregated.shape, wv.shape[0] // heads
    v_rows = wv.view(heads, head_dim, c).transpose(1, 2)
    values = torch.baddbmm(bv.view(heads, 1, head_dim), aggregated.view(heads, -1, c), v_rows)
    proj_cols = wp.view(-1, heads, head_dim).permute(1, 2, 0)  # [heads, head_dim, out]
    return values, torch.bmm(values, proj_cols).view(bh, m, -1)


class _RegionClusterBlock(torch.autograd.Function):
    """:meth:`RegionClusterMixer._forward_through_centers` as one function, from the channels-last map
    ``[B, H, W, C]`` to ``[B, H, W, out_dim]``: the region sets cut once, read by ``f`` and by the operator
    (one gradient, ``f``'s added in place into the operator's), the heads' maps on the centers, the dispatch,
    and ``proj``'s bias added in the copy back to the map. Float32/float64 outside autocast (the composed
    route runs under autocast and compilation).
    """

    @staticmethod
    def forward(ctx, x, wf, bf, wv, bv, wp, bp, alpha, beta, heads, folds, pool):  # type: ignore[override]
        (b, h, w, _), (fh, fw), o = x.shape, folds, wp.shape[0]
        points = split_region_sets(x, 1, folds)  # [B * regions, N, C], shared by the heads
        sets, n = points.shape[:2]
        feats = F.linear(points, wf, bf).view(sets, n, heads, -1).permute(2, 0, 1, 3).flatten(0, 1)
        state = NestedContext()
        aggregated, assignment, similarity = aggregate_forward(
            state, feats, points, alpha, beta, center_pool=pool, groups=heads
        )
        values, centers = _project_centers(aggregated, heads, wv, bv, wp)
        out, weight, shared = dispatch_forward(centers, assignment, similarity, heads)
        merged = out.new_empty(b, h, w, o)  # the bias added in the copy back to the map
        in_sets_order = merged.view(b, fh, h // fh, fw, w // fw, o).transpose(2, 3)
        torch.add(out.view(in_sets_order.shape), bp, out=in_sets_order)
        ctx.save_for_backward(points, aggregated, values, weight, shared, assignment, wf, wv, wp)
        ctx.heads, ctx.folds, ctx.state = heads, folds, state
        return merged

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        points, aggregated, values, weight, shared, assignment, wf, wv, wp = ctx.saved_tensors
        heads, folds = ctx.heads, ctx.folds
        (bh, m, c), head_dim = aggregated.shape, wv.shape[0] // heads
        grad_out = split_region_sets(grad, 1, folds)
        grad_centers, grad_similarity = dispatch_backward(grad_out, weight, shared, assignment, heads)
        grad_centers = grad_centers.view(heads, -1, wp.shape[0])
        proj_cols = wp.view(-1, heads, head_dim).permute(1, 2, 0)
        grad_values = torch.bmm(grad_centers, proj_cols.transpose(1, 2))  # [heads, sets * M, head_dim]
        grad_wp = torch.bmm(values.transpose(1, 2), grad_centers).permute(2, 0, 1).flatten(1)
        by_head = aggregated.view(heads, -1, c)
        grad_aggregated = torch.bmm(grad_values, wv.view(heads, head_dim, c)).view(bh, m, c)
        grad_wv = torch.bmm(grad_values.transpose(1, 2), by_head).flatten(0, 1)
        grad_feats, grad_points, grad_alpha, grad_beta = aggregate_backward(
            ctx.state, grad_aggregated, grad_similarity
        )
        sets, n = points.shape[:2]
        feat_rows = grad_feats.view(heads, sets, n, head_dim).permute(1, 2, 0, 3).reshape(sets * n, -1)
        rows = points.reshape(-1, c)  # (a view of the input where the sets need no copy: unfolded NCHW)
        grad_points.view(-1, c).addmm_(feat_rows, wf)  # f's gradient into the operator's own
        grad_x = merge_region_sets(grad_points, 1, folds, grad.shape[1:3])
        return (
            grad_x, feat_rows.t().mm(rows), feat_rows.sum(0),
            grad_wv, grad_values.sum(1).flatten(), grad_wp, grad_out.sum((0, 1)), grad_alpha, grad_beta,
            None, None, None,
        )  # fmt: skip


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
        """``[..., N, heads * head_dim]`` -> ``[(..., head), N, head_dim]``, the operator's layout."""
        n = x.shape[-2]
        return x.reshape(-1, n, self.heads, self.head_dim).transpose(1, 2).reshape(-1, n, self.head_dim)

    def merge_heads(self, x: torch.Tensor, lead: torch.Size) -> torch.Tensor:
        """Inverse of :meth:`split_heads`."""
        n = x.shape[-2]
        return x.reshape(-1, self.heads, n, self.head_dim).transpose(1, 2).reshape(*lead, n, -1)


class GroupClusterMixer(LinearClusterMixer):
    """Context clustering inside kNN groups ``[B, G, K, C]`` with the group mean as the one center.

    Residual, as in the official point block: returns ``x + proj(cluster(x))``.

    Training with one head and the ``similarity`` normaliser takes a shorter route to the same function:
    the operator aggregates ``x`` itself (:func:`pointcoc.cluster.aggregate_clusters`), and ``v`` and
    ``proj``'s matrix run once per group on the aggregate before the dispatch, instead of once per point
    (a third of the block's products, and two of its ``[B, G, K, *]`` tensors, are gone; the affine maps
    commute with the weighted mean and the dispatch's scaling); in float eager training it runs as one
    autograd function (:class:`_GroupClusterBlock`). Evaluation, recording, other operators
    (``cluster_op``) and other configurations run the official graph, whose products are the MACs counted
    and compared with the paper.
    """

    def __init__(
        self, dim: int, heads: int = 1, head_dim: int | None = None, aggregation: Aggregation = "similarity"
    ) -> None:
        super().__init__(dim, heads, head_dim or max(dim // 4, 32), aggregation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._through_centers(x):
            return self._forward_through_centers(x)
        feats, values = self.split_heads(self.f(x)), self.split_heads(self.v(x))
        out = self.cluster(feats, values, feats.mean(1, keepdim=True), values.mean(1, keepdim=True))
        return x + self.proj(self.merge_heads(out, x.shape[:2]))

    def _through_centers(self, x: torch.Tensor) -> bool:
        return self.heads == 1 and super()._through_centers(x)

    def fused(self, x: torch.Tensor) -> bool:
        """Whether this block runs as its one function (:class:`_GroupClusterBlock`) on ``x``."""
        return self._through_centers(x) and _fused_route(x)

    def fused_args(self) -> tuple:
        """What :class:`_GroupClusterBlock` takes after the points: f's, v's and proj's weights and biases,
        the similarity's alpha and beta."""
        maps = (self.f.weight, self.f.bias, self.v.weight, self.v.bias, self.proj.weight, self.proj.bias)
        return *maps, self.sim_alpha, self.sim_beta

    def _forward_through_centers(self, x: torch.Tensor) -> torch.Tensor:
        k, dim = x.shape[-2:]
        points = x.reshape(-1, k, dim)
        if _fused_route(x):
            return _GroupClusterBlock.apply(points, *self.fused_args()).view(x.shape)
        feats = self.f(points)
        aggregated, assignment, similarity = aggregate_clusters(
            feats, points, None, None, self.sim_alpha, self.sim_beta, self.aggregation
        )  # the group means as the centers
        centers = F.linear(self.v(aggregated), self.proj.weight)  # proj(v(g)) without proj's bias
        # in place on the dispatch's own [B * G, K, C] result, then viewed: in place on a view, autograd would
        # route the gradient through CopySlices
        out = dispatch_to_points(centers, assignment, similarity).add_(points).add_(self.proj.bias)
        return out.view(x.shape)


class _GroupClusterBlock(torch.autograd.Function):
    """:meth:`GroupClusterMixer._forward_through_centers` (one head, similarity normaliser) as one function:
    ``points + s_n proj(v(g_m(n))) + proj.bias`` with ``f``, the operator and the residual all reading
    ``points [B * G, K, C]``.

    Autograd sums the gradients of a tensor read three times out of place (two new full-size tensors per
    block in backward, ~13 ms apiece at PointMLP's 48 MiB with their page faults); here the operator's new
    values gradient takes the other two in place. Float32/float64 outside autocast (the composed route runs
    under autocast and compilation).
    """

    @staticmethod
    def forward(ctx, points, wf, bf, wv, bv, wp, bp, alpha, beta):  # type: ignore[override]
        state = NestedContext()
        # the group means as the centers
        aggregated, assignment, similarity = aggregate_forward(
            state, F.linear(points, wf, bf), points, alpha, beta
        )
        values = F.linear(aggregated, wv, bv)
        centers = F.linear(values, wp)  # proj(v(g)) without proj's bias
        out, weight, shared = dispatch_forward(centers, assignment, similarity, residual=points)
        ctx.save_for_backward(points, wf, wv, wp, aggregated, values, assignment, weight, shared)
        ctx.state, ctx.grad_owned = state, False
        return out.add_(bp)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        points, wf, wv, wp, aggregated, values, assignment, weight, shared = ctx.saved_tensors
        rows = points.reshape(-1, points.shape[-1])
        # the dispatch's similarity and center gradients; proj's and v's on the centers
        grad_centers, grad_similarity = dispatch_backward(grad, weight, shared, assignment)
        grad_centers = grad_centers.flatten(0, 1)
        grad_values = grad_centers.mm(wp)
        grad_aggregated = grad_values.mm(wv).view(aggregated.shape)
        # grad_owned (set by an enclosing function that made grad): the operator's values gradient and f's
        # are added into it, the residual's being grad itself; else the residual's and f's into the operator's
        grad_bp = grad.sum((0, 1))  # (before grad, when owned, takes the others in place)
        owned = grad.view(points.shape) if ctx.grad_owned else None
        grad_feats, grad_points, grad_alpha, grad_beta = aggregate_backward(
            ctx.state, grad_aggregated, grad_similarity, values_grad_into=owned
        )
        feat_rows = grad_feats.reshape(-1, grad_feats.shape[-1])
        if owned is None:
            grad_points.add_(grad)
        grad_points.view(-1, rows.shape[-1]).addmm_(feat_rows, wf)  # one [B * G, K, C] tensor
        return (
            grad_points, feat_rows.t().mm(rows), feat_rows.sum(0),
            grad_values.t().mm(aggregated.flatten(0, 1)), grad_values.sum(0),
            grad_centers.t().mm(values.flatten(0, 1)), grad_bp, grad_alpha, grad_beta,
        )  # fmt: skip


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
