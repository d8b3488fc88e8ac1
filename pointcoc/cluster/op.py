"""The context-cluster operator: the one place where its math lives.

For each point n with similarity features ``p_n`` and value ``v_n``, and centers ``c_m`` with
values ``w_m`` (all proposed by the caller):

    s_nm   = sigmoid(beta + alpha * cos(c_m, p_n))
    m(n)   = argmax_m s_nm                    (hard assignment; the gradient flows through s_n m(n))
    s_n    = s_n m(n)
    g_m    = (sum_{n: m(n)=m} s_n v_n + w_m) / (sum_{n: m(n)=m} s_n + 1)     aggregation="similarity"
    g_m    = (sum_{n: m(n)=m} s_n v_n + w_m) / (|{n: m(n)=m}| + 1)          aggregation="count"
    out_n  = s_n * g_m(n)

The normaliser is the checkpoint's, not a choice: Context-Cluster trained with ``count`` (``mask.sum``) until
the May-2023 fix and with ``similarity`` (``sim.sum``, Eq. 1 of the paper) since; openmixup trains with
``count``. Loading weights into the other normaliser moves the logits and changes predictions.

The official code materialises ``[batch, centers, points, dim]`` products to do this; here nothing larger
than the inputs is built or saved, with a hand-written backward. Two paths compute the same result:

- **index** (inference, or many centers): the aggregation is an index-add and the dispatch an index-select
  over the ``[B * M, E]`` center table. It builds no ``[B, N, M]`` tensor, and its matrix products are the
  official code's (the similarity), so the counted MACs are the official ones.
- **dense** (training with at most ``DENSE_MAX_CENTERS`` centers): the one-hot weights
  ``w_nm = s_n [m = m(n)]`` as a ``[B, N, M]`` tensor (the backward builds them too), the aggregation
  ``w^T v`` and the dispatch ``w g`` as batched products; with a few centers per set (image regions: 4,
  kNN groups: 1) a batched product over tiny sets is several times faster than an index-add over their
  rows. The weights are rebuilt in backward rather than saved: one scatter, and the backward's peak
  memory (the input gradients being allocated) stays without them.

:func:`aggregate_clusters` stops before the dispatch (returns ``g_m``) and :func:`dispatch_to_points` does it,
for callers that apply a linear map to the ``M`` centers rather than to the ``N`` points (the PointMLP-CoC
block and the image ``Cluster`` in training, :class:`pointcoc.layers.GroupClusterMixer` and
:class:`pointcoc.layers.RegionClusterMixer`); same forward and backward code. Both take ``groups``: the
sets come in ``groups`` blocks (e.g. one per head) whose ``i``-th sets share one set of values (one region's
input), which then need not be copied per set; the aggregation runs as one batched product per shared set
over all its sets' centers (dense path), and the dispatch sums those sets' outputs.

:func:`aggregate_forward` and :func:`aggregate_backward` run the same forward and backward inside another
autograd function, and :func:`dispatch_forward` and :func:`dispatch_backward` the dispatch, for blocks that
write their backward out around the operator (the cluster mixers' training routes,
:mod:`pointcoc.layers.cluster_mixers`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ..utils.autograd import NestedContext, grad_needed
from . import native

# The cluster normaliser (see the module docstring); "similarity" is today's official one.
Aggregation = Literal["similarity", "count"]
AGGREGATIONS: tuple[str, ...] = ("similarity", "count")


def check_aggregation(aggregation: str) -> None:
    if aggregation not in AGGREGATIONS:
        raise ValueError(
            f"aggregation must be one of {AGGREGATIONS} (the cluster normaliser: sum of similarities + 1, "
            f"or number of members + 1), got {aggregation!r}"
        )


class ClusterResult(NamedTuple):
    out: torch.Tensor  # [B, N, E] dispatched features
    assignment: torch.Tensor  # [B, N] index of each point's center
    similarity: torch.Tensor  # [B, N] sigmoid similarity to that center


def check_cluster_inputs(
    points: torch.Tensor,
    values: torch.Tensor,
    centers: torch.Tensor | None,
    value_centers: torch.Tensor | None,
    groups: int = 1,
) -> None:
    """Shapes and ``groups`` must match; ``centers`` and ``value_centers`` may both be ``None`` (means)."""
    if (centers is None) != (value_centers is None):
        raise ValueError("centers and value_centers must both be given or both be None (each set's mean)")
    if points.dim() != 3:
        raise ValueError(f"points must have shape [B, N, D], got {list(points.shape)}")
    b, n, d = points.shape
    if groups < 1 or b % groups:
        raise ValueError(f"groups must be a positive divisor of the {b} point sets, got {groups}")
    bv, shared = b // groups, "B" if groups == 1 else "B / groups"
    e = values.shape[-1] if values.dim() == 3 else -1
    m = centers.shape[1] if centers is not None and centers.dim() == 3 else -1
    for name, t, want, expected in (
        ("values", values, (bv, n, e), f"[{shared}, N, E]"),
        ("centers", centers, (b, m, d), "[B, M, D]"),
        ("value_centers", value_centers, (bv, m, e), f"[{shared}, M, E]"),
    ):
        if t is None:
            continue
        if t.dim() != 3 or tuple(t.shape) != want or min(want) < 1:
            raise ValueError(
                f"{name} must have shape {expected} = {[bv, n, 'E'] if name == 'values' else list(want)} "
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


_NORMALIZE_EPS = 1e-12  # F.normalize's default, as in the official code
DENSE_MAX_CENTERS = 16  # the dense path's limit: its [B, N, M] weights stay below the values' size for M < E
PATHS = ("auto", "index", "dense")


def _center_rows(assignment: torch.Tensor, m: int) -> torch.Tensor:
    """``[B * N]`` row of each point's center in a ``[B * M, *]`` table of all sets' centers."""
    b = assignment.shape[0]
    return (assignment + torch.arange(0, b * m, m, device=assignment.device).unsqueeze(-1)).view(-1)


def _gather_rows(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``table [B, M, X]`` -> ``[B, N, X]``: each point's center row, a new tensor."""
    b, m, x = table.shape
    return table.reshape(b * m, x).index_select(0, rows).view(b, -1, x)


def _shared_index(assignment: torch.Tensor, m: int, groups: int) -> torch.Tensor:
    """``[B / groups, N, groups]``: each point's center in each block, as a column of the shared layout
    ``[B / groups, N, groups * M]`` (block-major), the layout of one batched product per shared value set."""
    b, n = assignment.shape
    offsets = torch.arange(0, groups * m, m, device=assignment.device).view(groups, 1, 1)
    return (assignment.view(groups, b // groups, n) + offsets).permute(1, 2, 0)


def _one_hot_weights(
    assignment: torch.Tensor,
    weights: torch.Tensor,
    m: int,
    groups: int = 1,
    pooled: bool = False,
    pool: torch.Tensor | None = None,
) -> torch.Tensor:
    """``w_nm = weights_n [m = assignment_n]`` as ``[B, N, M]``; with ``groups`` blocks of sets,
    ``[B / groups, N, groups * M]``: each shared value set's points against the centers of its sets in all
    blocks (:func:`_shared_index`). Differentiable in ``weights``.

    ``pooled``: plus each center's pooling row (``pool [M, N]``, or ``1 / N`` without it), so that
    ``w^T @ values`` is ``w_m + sum_n s_n v_n`` with the pooled value center ``w_m`` in the same product."""
    b, n = assignment.shape
    index, src = assignment.unsqueeze(-1), weights.unsqueeze(-1)
    if groups > 1:  # scattered straight into the shared layout: no copy of a [B, N, M] tensor
        index = _shared_index(assignment, m, groups)
        src = weights.view(groups, b // groups, n).permute(1, 2, 0)
    shape = (b // groups, n, groups * m)
    if not pooled:  # in place on the new zeros: an out-of-place scatter would copy them first
        return weights.new_zeros(shape).scatter_(-1, index, src)
    if pool is None:
        return weights.new_full(shape, 1.0 / n).scatter_add_(-1, index, src)
    rows = pool.t().to(weights.dtype).unsqueeze(1).expand(n, groups, m).reshape(n, groups * m)
    return rows.expand(shape).contiguous().scatter_add_(-1, index, src)


def _blocks_to_shared(x: torch.Tensor, groups: int) -> torch.Tensor:
    """``[B, M, E]`` in ``groups`` blocks -> ``[B / groups, groups * M, E]``, block-major per shared set."""
    b, m, e = x.shape
    return x.view(groups, b // groups, m, e).transpose(0, 1).reshape(b // groups, groups * m, e)


def _divide_shared(x: torch.Tensor, denominator: torch.Tensor, groups: int, to_shared: bool) -> torch.Tensor:
    """``x / denominator`` per center, written in the other of the two layouts in the same pass: ``x`` in
    the shared layout ``[B / groups, groups * M, E]`` to blocks ``[B, M, E]``, or (``to_shared``) back."""
    b, m = denominator.shape
    sets, e = b // groups, x.shape[-1]
    den = denominator.view(groups, sets, m, 1)
    if to_shared:  # read in blocks order, written [S, groups, M, E]
        source, den = x.view(groups, sets, m, e).transpose(0, 1), den.transpose(0, 1)
        shape, final = (sets, groups, m, e), (sets, groups * m, e)
    else:
        source = x.view(sets, groups, m, e).transpose(0, 1)
        shape, final = (groups, sets, m, e), (b, m, e)
    if torch.compiler.is_compiling():  # out= does not trace; Inductor fuses the division and the copy itself
        return (source / den).reshape(final)
    out = x.new_empty(final)
    torch.div(source, den, out=out.view(shape))  # (the written tensor viewed contiguously)
    return out


class _ContextCluster(torch.autograd.Function):
    """The operator with its backward written out.

    Autograd through the composed ops keeps several ``[B, N, E]`` temporaries alive and runs ~20 full-size
    kernels per step; here only ``[B, N]`` and ``[B, M, *]`` tensors are saved and backward allocates, besides
    the input gradients, only ``[B, N, M]`` buffers. Similarities are computed in at least float32 (see
    :func:`cosine_similarity_to_centers`), the value path in the values' dtype, with autocast off inside.
    """

    @staticmethod
    def forward(
        ctx, points, values, centers, value_centers, alpha, beta, count, dense, dispatch, groups, pool
    ):  # type: ignore[override]
        ctx.pooled, ctx.pool, ctx.dense = centers is None, pool, dense
        with torch.autocast(points.device.type, enabled=False):
            (b, n), e = points.shape[:2], values.shape[-1]
            if ctx.pooled and not dense:  # (the dense path pools the values inside its aggregation product)
                value_centers = _pooled(values, pool)
            sim, assignment, cos_chosen, p_len, c_hat, c_len = _assign(points, centers, pool, alpha, beta)
            sim_out = sim.to(values.dtype)
            m = c_hat.shape[1]
            members = torch.ones_like(sim_out) if count else sim_out
            if dense:
                # [B / groups, N, groups * M]; the pooled value centers join as their pooling rows
                weight = _one_hot_weights(assignment, sim_out, m, groups, ctx.pooled, pool)
                if ctx.pooled:
                    numerator = torch.bmm(weight.transpose(1, 2), values)
                else:
                    repeated = value_centers.repeat(1, groups, 1)
                    numerator = torch.baddbmm(repeated, weight.transpose(1, 2), values)
                denominator = values.new_ones(b, m).scatter_add_(-1, assignment, members)  # [B, M]
                if groups == 1:
                    aggregated = numerator.div_(denominator.unsqueeze(-1))
                else:
                    aggregated = _divide_shared(numerator, denominator, groups, to_shared=False)
                if dispatch:
                    if ctx.pooled:
                        weight = _one_hot_weights(assignment, sim_out, m)
                    out = torch.bmm(weight, aggregated)
                else:
                    out = aggregated
                del weight
            else:
                # Aggregate and dispatch by rows of the [B * M, E] center table (index_add / index_select);
                # a one-hot matmul would also add MACs that the official models do not have.
                rows = _center_rows(assignment, m)
                weighted = (values * sim_out.unsqueeze(-1)).reshape(b * n, e)
                numerator = value_centers.reshape(b * m, e).index_add(0, rows, weighted)
                del weighted
                # scatter_add_, not index_add_: Inductor's CPU code generation failed on the latter here
                # (compiled inference of the point models)
                denominator = values.new_ones(b * m).scatter_add_(0, rows, members.reshape(-1))
                aggregated = numerator.div_(denominator.unsqueeze(-1)).view(b, m, e)
                denominator = denominator.view(b, m)
                out = _gather_rows(aggregated, rows).mul_(sim_out.unsqueeze(-1)) if dispatch else aggregated
        ctx.save_for_backward(
            points, values, centers, c_hat, c_len, alpha, sim, sim_out, assignment, p_len, cos_chosen,
            aggregated, denominator,
        )  # fmt: skip
        ctx.beta_shape, ctx.beta_dtype, ctx.count, ctx.dispatch = beta.shape, beta.dtype, count, dispatch
        ctx.groups, ctx.values_grad_into = groups, None
        ctx.mark_non_differentiable(assignment)
        return out, assignment, sim_out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, _grad_assignment, grad_sim_out):  # type: ignore[override]
        (
            points, values, centers, c_hat, c_len, alpha, sim, sim_out, assignment, p_len, cos_chosen,
            aggregated, denominator,
        ) = ctx.saved_tensors  # fmt: skip
        with torch.autocast(points.device.type, enabled=False):
            index = assignment.unsqueeze(-1)
            # out_n = s_n g_m(n),  g_m = num_m / den_m,  num_m = w_m + sum s_n v_n,
            # den_m = 1 + sum s_n ("similarity") or 1 + count_m ("count": no gradient to s)
            if ctx.dispatch:
                weight = _one_hot_weights(assignment, sim_out, c_hat.shape[1])
                grad_numerator = torch.bmm(weight.transpose(1, 2), grad_out).div_(denominator.unsqueeze(-1))
                del weight  # frees a [B, N, M] buffer before the next one is allocated
            elif ctx.groups == 1:  # grad_out is the gradient of g itself
                grad_numerator = grad_out / denominator.unsqueeze(-1)
            groups, (b, m), e = ctx.groups, denominator.shape, values.shape[-1]
            # dL/ds_n = <G_n, g_m(n)> + <v_n, dnum_m(n)> + dden_m(n): products for all m, then picked.
            if groups == 1:
                grad_denominator = (grad_numerator * aggregated).sum(-1).neg_()  # [B, M]
                # Per point, the row of its center (index_select of rows; with one center per set, that row
                # broadcast): no [B, N, M] buffer alive with the two [B, N, *] input gradients, where the
                # backward's memory peaks.
                if m == 1:
                    center_rows = grad_numerator
                else:
                    center_rows = _gather_rows(grad_numerator, _center_rows(assignment, m))
                scale, into = sim_out.unsqueeze(-1), ctx.values_grad_into
                if into is not None:
                    grad_values = into.addcmul_(center_rows, scale)
                else:
                    grad_values = center_rows * scale if m == 1 else center_rows.mul_(scale)
                grad_value_centers = grad_numerator
                grad_sim_all = torch.bmm(values, grad_numerator.transpose(1, 2))
                if ctx.dispatch:
                    grad_sim_all.baddbmm_(grad_out, aggregated.transpose(1, 2))
                grad_sim = grad_sim_all.gather(-1, index).squeeze(-1)
            else:  # the shared values collect from all their sets' centers: batched products again
                grad_shared = _divide_shared(grad_out, denominator, groups, to_shared=True)
                shared = grad_shared.view(b // groups, groups, m, e)
                in_shared_order = aggregated.view(groups, b // groups, m, e).transpose(0, 1)
                grad_denominator = (shared * in_shared_order).sum(-1).transpose(0, 1).reshape(b, m).neg_()
                # the pooled value centers' gradients come with the same product (their pooling rows)
                grad_value_centers = None if ctx.pooled else shared.sum(1)
                weight = _one_hot_weights(assignment, sim_out, m, groups, ctx.pooled, ctx.pool)
                grad_values = torch.bmm(weight, grad_shared)
                del weight
                grad_sim_all = torch.bmm(values, grad_shared.transpose(1, 2))  # [B / groups, N, groups * M]
                picked = grad_sim_all.gather(-1, _shared_index(assignment, m, groups))  # [B / g, N, g]
                grad_sim = picked.permute(2, 0, 1).reshape(b, -1)
            del grad_sim_all
            if not ctx.count:
                grad_sim = grad_sim + grad_denominator.gather(-1, assignment)
            grad_sim = grad_sim.to(sim.dtype)
            if grad_sim_out is not None:
                grad_sim += grad_sim_out
            grad_points, grad_centers, grad_alpha, grad_beta = _assign_backward(
                grad_sim, sim, cos_chosen, p_len, points, c_hat, c_len, assignment, alpha,
                ctx.beta_dtype, ctx.pool, ctx.pooled, ctx.dense,
            )  # fmt: skip
            # the pooled value centers' gradients into the values' own (on the dense path they already are)
            if grad_value_centers is not None and ctx.pooled:
                _spread_pooled(grad_values, grad_value_centers, ctx.pool)
                grad_value_centers = None
        grad_alpha = grad_alpha.to(alpha.dtype).reshape(alpha.shape)
        grad_beta = grad_beta.to(ctx.beta_dtype).reshape(ctx.beta_shape)
        return (
            grad_points.to(points.dtype), grad_values, _cast(grad_centers, centers), grad_value_centers,
            grad_alpha, grad_beta, None, None, None, None, None,
        )  # fmt: skip


def _pooled(values: torch.Tensor, pool: torch.Tensor | None) -> torch.Tensor:
    """``pool @ values`` per set (``[M, N]`` pooling rows), or each set's mean without ``pool``."""
    if pool is None:
        return values.mean(1, keepdim=True)
    # a batched product against the expanded matrix: matmul would copy the values transposed
    return torch.bmm(pool.to(values.dtype).expand(values.shape[0], -1, -1), values)


def _cast(t: torch.Tensor | None, like: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.to(like.dtype)


def _native(points: torch.Tensor, *scalar_dtypes: torch.dtype) -> ModuleType | None:
    """The compiled similarity backward when it takes these inputs (:mod:`pointcoc.cluster.native`; alpha and
    beta in the points' dtype), else ``None``: the ATen code computes the same."""
    if any(dtype != points.dtype for dtype in scalar_dtypes) or not native.applies(points):
        return None
    return native.kernels()


def _assign(
    points: torch.Tensor,
    centers: torch.Tensor | None,
    pool: torch.Tensor | None,
    alpha: torch.Tensor,
    beta: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """Each point's center: ``sim [B, N]`` (max over the centers of sigmoid(alpha cos + beta)), its index
    ``assignment``, ``cos_chosen`` (cos at it), and for the backward ``p_len [B, N]``, ``c_hat [B, M, D]``
    (centers over max(|c|, eps)) and ``c_len [B, M, 1]``. ``centers = None``: pooled from the points
    (:func:`_pooled`). In at least float32 (see :func:`cosine_similarity_to_centers`). ATen's ops always: the
    assignment rounds as the official code's (compiled code would tie saturated similarities differently)."""
    if centers is None:  # in the points' dtype, as given centers would be
        centers = _pooled(points, pool)
    sim_dtype = torch.promote_types(points.dtype, torch.float32)
    p, c = points.to(sim_dtype), centers.to(sim_dtype)
    p_len, c_len = p.norm(dim=-1), c.norm(dim=-1, keepdim=True)  # [B, N], [B, M, 1]
    p_norm = p_len.clamp_min(_NORMALIZE_EPS)
    c_hat = c / c_len.clamp_min(_NORMALIZE_EPS)
    # cos(p, c) = <p, c_hat> / |p|: no normalised [B, N, D] copy of the points is needed.
    cos = torch.bmm(p, c_hat.transpose(1, 2)).div_(p_norm.unsqueeze(-1))
    # the official expression's rounding (sigmoid(beta + alpha * cos)): with trained weights, logits
    # that saturate the sigmoid tie, and a fused multiply-add there moved assignments
    sim, assignment = (alpha * cos).add_(beta).sigmoid_().max(dim=-1)  # [B, N]
    cos_chosen = cos.gather(-1, assignment.unsqueeze(-1)).squeeze(-1)
    return sim, assignment, cos_chosen, p_len, c_hat, c_len


def _assign_backward(
    grad_sim: torch.Tensor,
    sim: torch.Tensor,
    cos_chosen: torch.Tensor,
    p_len: torch.Tensor,
    points: torch.Tensor,
    c_hat: torch.Tensor,
    c_len: torch.Tensor,
    assignment: torch.Tensor,
    alpha: torch.Tensor,
    beta_dtype: torch.dtype,
    pool: torch.Tensor | None,
    pooled: bool,
    dense: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """:func:`_assign`'s backward from ``grad_sim [B, N]`` (the chosen similarities' gradient): the points'
    gradient (with the pooled centers' added when ``pooled``), the centers' (``None`` when pooled), alpha's
    and beta's (0-dim)."""
    kernels = _native(points, alpha.dtype, beta_dtype)
    if kernels is not None:
        pool = None if pool is None else pool.to(points.dtype).contiguous()
        grad_points, grad_centers, sums = kernels.similarity_backward(
            grad_sim.contiguous(), sim, cos_chosen, p_len, points.contiguous(), c_hat, c_len, assignment,
            pool, pooled, float(alpha), _NORMALIZE_EPS,
        )  # fmt: skip
        grad_alpha, grad_beta = sums.sum(1)  # the per-set sums, [2, B]
        return grad_points, None if pooled else grad_centers, grad_alpha, grad_beta
    m = c_hat.shape[1]
    grad_logit = grad_sim.mul_(sim * (1.0 - sim))  # through the sigmoid
    grad_beta = grad_logit.sum()
    grad_alpha = (grad_logit * cos_chosen).sum()
    grad_cos = grad_logit.mul_(alpha)  # [B, N]; cos enters only at m(n)
    # cos = <p, c_hat> / r with r = max(|p|, eps); clamp_min passes no gradient below eps:
    # dL/dp = dcos / r * (c_hat - cos * p / |p| * [|p| >= eps]). In place on [B, N] temporaries:
    # the input gradients below are where the backward's memory peaks.
    p = points.to(c_hat.dtype)
    p_norm = p_len.clamp_min(_NORMALIZE_EPS)
    tangential = grad_cos.div_(p_norm).unsqueeze(-1)  # dcos / r
    radial = (tangential.squeeze(-1) * cos_chosen).mul_(p_len >= _NORMALIZE_EPS).div_(p_norm).neg_()
    del p_norm
    scaled = _one_hot_weights(assignment, tangential.squeeze(-1), m)
    grad_c_hat = torch.bmm(scaled.transpose(1, 2), p)  # [B, M, D]
    if dense:  # the same one-hot weights carry c_hat back to the points
        grad_points = torch.bmm(scaled, c_hat)
    else:
        grad_points = _gather_rows(c_hat, _center_rows(assignment, m)).mul_(tangential)
    del scaled
    grad_points.addcmul_(p, radial.unsqueeze(-1))
    radial_c = (grad_c_hat * c_hat).sum(-1, keepdim=True) * (c_len >= _NORMALIZE_EPS)
    grad_centers = (grad_c_hat - c_hat * radial_c) / c_len.clamp_min(_NORMALIZE_EPS)
    if not pooled:
        return grad_points, grad_centers, grad_alpha, grad_beta
    _spread_pooled(grad_points, grad_centers, pool)
    return grad_points, None, grad_alpha, grad_beta


def _spread_pooled(grad: torch.Tensor, grad_pooled: torch.Tensor, pool: torch.Tensor | None) -> None:
    """Adds pooled centers' gradients ``[B, M, E]`` into their sets' own ``grad [B, N, E]`` (the transpose of
    :func:`_pooled`): no ``[B, N, E]`` tensor per pooling."""
    if pool is None:
        grad.add_(grad_pooled.to(grad.dtype) / grad.shape[1])
    else:
        grad.baddbmm_(pool.t().to(grad.dtype).expand(grad.shape[0], -1, -1), grad_pooled.to(grad.dtype))


def _operator_args(
    points: torch.Tensor,
    values: torch.Tensor,
    centers: torch.Tensor | None,
    value_centers: torch.Tensor | None,
    alpha: torch.Tensor,
    beta: torch.Tensor,
    aggregation: str,
    path: str,
    dispatch: bool,
    groups: int = 1,
    center_pool: torch.Tensor | None = None,
) -> tuple:
    """The checked arguments of :class:`_ContextCluster` (its path resolved)."""
    check_cluster_inputs(points, values, centers, value_centers, groups)
    if center_pool is not None and (centers is not None or center_pool.shape[-1] != points.shape[1]):
        raise ValueError(
            f"center_pool [M, N] pools the centers of {points.shape[1]}-point sets (with centers = "
            f"value_centers = None), got {list(center_pool.shape)}"
            + ("" if centers is None else " with centers given")
        )
    check_aggregation(aggregation)
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    if groups > 1 and path == "index":
        raise ValueError(
            "shared values (groups > 1) are aggregated by the dense path; use path='auto' or 'dense'"
        )
    if path == "auto":
        training = grad_needed(
            *(t for t in (points, values, centers, value_centers, alpha, beta) if t is not None)
        )
        m = (1 if center_pool is None else center_pool.shape[0]) if centers is None else centers.shape[1]
        dense = groups > 1 or (training and m <= DENSE_MAX_CENTERS)
    else:
        dense = path == "dense"
    count = aggregation == "count"
    return points, values, centers, value_centers, alpha, beta, count, dense, dispatch, groups, center_pool


def _run(*args, **kwargs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _ContextCluster.apply(*_operator_args(*args, **kwargs))


def context_cluster(
    points: torch.Tensor,
    values: torch.Tensor,
    centers: torch.Tensor,
    value_centers: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor,
    aggregation: Aggregation = "similarity",
    path: str = "auto",
) -> ClusterResult:
    """Cluster ``points [B, N, D]`` around ``centers [B, M, D]`` and dispatch aggregated ``values [B, N, E]``.

    ``value_centers [B, M, E]`` are the centers' own values (e.g. pooled like the centers);
    ``alpha``/``beta`` are the learnable scalars of the similarity; ``aggregation`` the normaliser of the
    aggregate (``"similarity"`` or ``"count"``, see the module docstring). Heads and regions are folded
    into B by the caller. Differentiable once (no double backward). ``path``: ``"auto"`` takes the dense
    path when a gradient will be needed and ``M <= DENSE_MAX_CENTERS``, else the index path (module
    docstring); ``"index"`` or ``"dense"`` force one (same results).
    """
    return ClusterResult(*_run(points, values, centers, value_centers, alpha, beta, aggregation, path, True))


class ClusterCenters(NamedTuple):
    aggregated: torch.Tensor  # [B, M, E] g_m, the centers' aggregated values
    assignment: torch.Tensor  # [B, N] index of each point's center
    similarity: torch.Tensor  # [B, N] sigmoid similarity to that center


def aggregate_clusters(
    points: torch.Tensor,
    values: torch.Tensor,
    centers: torch.Tensor | None,
    value_centers: torch.Tensor | None,
    alpha: torch.Tensor,
    beta: torch.Tensor,
    aggregation: Aggregation = "similarity",
    path: str = "auto",
    groups: int = 1,
    center_pool: torch.Tensor | None = None,
) -> ClusterCenters:
    """:func:`context_cluster` up to its aggregation: the centers' ``g_m``, without the dispatch to points.

    ``dispatch_to_points(*aggregate_clusters(...))`` equals ``context_cluster(...).out``. The split serves
    callers whose values are the input of a linear map (``v``, then ``proj`` after the dispatch): with
    ``aggregation="similarity"`` g_m is a weighted mean (weights ``1`` and ``s_n``), which commutes with an
    affine map, and the dispatch is a scaling, which commutes with a linear one, so such a caller can pass
    its pre-projection input as the values and apply the maps to the ``M`` centers instead of the ``N``
    points. Same arguments, paths and backward as :func:`context_cluster`.

    ``groups``: the ``B`` point sets come in ``groups`` blocks of ``B / groups`` (e.g. one block per head)
    whose ``i``-th sets share the values ``values[i]`` (``values [B / groups, N, E]``, ``value_centers
    [B / groups, M, E]``), e.g. one region's input clustered by every head; each set still gets its own
    aggregate, ``[B, M, E]``. Takes the dense path.

    ``centers = value_centers = None``: the centers are pooled from the sets themselves, ``center_pool @
    points`` and ``center_pool @ values`` with ``center_pool [M, N]`` (e.g. an image region's grid windows,
    :func:`pointcoc.cluster.set_pool_matrix`), or, without it, one center per set, the mean of its points
    (the point models' kNN groups). Their gradients are added into the points' and values' own: the same
    result as passing the pooled centers, without a full-size gradient tensor and its accumulation for each.
    """
    return ClusterCenters(
        *_run(
            points, values, centers, value_centers, alpha, beta, aggregation, path, False, groups, center_pool
        )
    )


def aggregate_forward(
    state: NestedContext,
    points: torch.Tensor,
    values: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor,
    aggregation: Aggregation = "similarity",
    center_pool: torch.Tensor | None = None,
    groups: int = 1,
) -> ClusterCenters:
    """:func:`aggregate_clusters` with pooled centers (``centers = value_centers = None``), on its training
    path, inside another autograd function's forward: no graph is recorded, and ``state`` keeps what
    :func:`aggregate_backward` needs."""
    pooled = (None, None, alpha, beta, aggregation, "dense", False, groups, center_pool)
    return ClusterCenters(*_ContextCluster.forward(state, *_operator_args(points, values, *pooled)))


def aggregate_backward(
    state: NestedContext,
    grad_aggregated: torch.Tensor,
    grad_similarity: torch.Tensor | None,
    values_grad_into: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of :func:`aggregate_forward`'s ``points, values, alpha, beta`` from those of its
    aggregate and similarity: new tensors (which the caller may add into in place), but the values' gradient
    added in place into ``values_grad_into`` when given (a ``[B, N, E]`` buffer of the caller's own, e.g. the
    gradient that a residual connection passes to the same values)."""
    state.values_grad_into = values_grad_into
    grads = _ContextCluster.backward(state, grad_aggregated, None, grad_similarity)
    return grads[0], grads[1], grads[4], grads[5]


def dispatch_to_points(
    aggregated: torch.Tensor, assignment: torch.Tensor, similarity: torch.Tensor, groups: int = 1
) -> torch.Tensor:
    """``out_n = s_n * g_m(n)``: ``aggregated [B, M, E]`` dispatched to the points, ``[B, N, E]``.

    ``groups`` > 1: the sum over the ``groups`` blocks' sets that share values (as :func:`aggregate_clusters`
    takes them), ``[B / groups, N, E]``, by one batched product per shared set.
    """
    m = aggregated.shape[1]
    if groups == 1 and m > DENSE_MAX_CENTERS:
        return _gather_rows(aggregated, _center_rows(assignment, m)) * similarity.unsqueeze(-1)
    # As a product with the one-hot weights (the dense path's dispatch): its backward builds no [B, N, E]
    # tensor, where a row gather's product with the similarities keeps one and allocates two more.
    return dispatch_forward(aggregated, assignment, similarity, groups)[0]


def dispatch_forward(
    aggregated: torch.Tensor,
    assignment: torch.Tensor,
    similarity: torch.Tensor,
    groups: int = 1,
    residual: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`dispatch_to_points` as a product with the one-hot weights: the dispatched points (plus
    ``residual``, in the same product), and the weights and the centers in the shared layout, which
    :func:`dispatch_backward` takes (for blocks that write their backward out)."""
    m = aggregated.shape[1]
    if m == 1 and groups == 1:
        weight = similarity.unsqueeze(-1)
    else:
        weight = _one_hot_weights(assignment, similarity, m, groups)
    shared = _blocks_to_shared(aggregated, groups)
    out = torch.bmm(weight, shared) if residual is None else torch.baddbmm(residual, weight, shared)
    return out, weight, shared


def dispatch_backward(
    grad_out: torch.Tensor,
    weight: torch.Tensor,
    shared: torch.Tensor,
    assignment: torch.Tensor,
    groups: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of :func:`dispatch_forward`'s ``aggregated [B, M, E]`` and ``similarity [B, N]`` from
    that of its output."""
    (b, n), m = assignment.shape, weight.shape[-1] // groups
    products = torch.bmm(grad_out, shared.transpose(1, 2))  # [B / groups, N, groups * M]: pick each point's
    grad_similarity = products.gather(-1, _shared_index(assignment, m, groups)).permute(2, 0, 1).reshape(b, n)
    grad_shared = torch.bmm(weight.transpose(1, 2), grad_out)
    sets, e = grad_shared.shape[0], grad_shared.shape[-1]
    return grad_shared.view(sets, groups, m, e).transpose(0, 1).reshape(b, m, e), grad_similarity
