"""PointMLP-CoC's pre-extraction block (a context-cluster block, then a residual MLP) in training as one
autograd function."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

from ..utils.autograd import NestedContext
from .cluster_mixers import GroupClusterMixer, _GroupClusterBlock
from .pointwise import LinearBN, _ResidualUnit, _unit_args, fused_unit, residual_unit


def cluster_residual_unit(
    x: torch.Tensor, mixer: GroupClusterMixer, net1: LinearBN, net2: LinearBN, act: nn.Module
) -> torch.Tensor:
    """``residual_unit(mixer(x), net1, net2, act)`` for kNN groups ``x [B, G, K, C]``.

    Where both would run as their own functions (:class:`_GroupClusterBlock`, :class:`_ResidualUnit`), they
    run as one: the residual MLP's input gradient is a tensor of its backward's own, handed to the cluster
    block as the gradient of its output, and the block adds its values' and ``f``'s gradients into it in
    place (its residual's is that gradient itself) instead of building a new ``[B, G, K, C]`` one; one
    full-size tensor, its page faults and two passes fewer per block. Otherwise the two compose.
    """
    if not (mixer.fused(x) and fused_unit(x, net1, net2, act)):
        return residual_unit(mixer(x), net1, net2, act)
    points, block_args = x.reshape(-1, *x.shape[-2:]), mixer.fused_args()
    out = _ClusterResidualUnit.apply(points, len(block_args), *block_args, *_unit_args(net1, net2))
    return out.view(x.shape)


class _ClusterResidualUnit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, points, block_arity, *args):  # type: ignore[override]
        ctx.block, ctx.unit = NestedContext(), NestedContext()
        mid = _GroupClusterBlock.forward(ctx.block, points, *args[:block_arity])
        ctx.block.grad_owned = True
        return _ResidualUnit.forward(ctx.unit, mid, *args[block_arity:])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        unit_grads = _ResidualUnit.backward(ctx.unit, grad)
        grad_points, *block_grads = _GroupClusterBlock.backward(ctx.block, unit_grads[0])
        return grad_points, None, *block_grads, *unit_grads[1:]
