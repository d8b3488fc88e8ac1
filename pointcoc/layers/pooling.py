"""Max pooling over one dimension whose backward builds one input-sized tensor."""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ..utils.autograd import grad_needed


def max_values(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x.max(dim).values``, the gradient going to the index ``max`` returns (one per tie, as the official
    ``adaptive_max_pool1d``). Autograd's backward of ``max`` fills new zeros and then scatters into a copy
    of them (two input-sized tensors, 48 MiB apiece per PointMLP stage at batch 8); here the gradient is
    scattered into the zeros in place. Under compilation the plain op is traced."""
    if grad_needed(x) and not torch.compiler.is_compiling():
        return _MaxValues.apply(x, dim)
    return x.max(dim=dim).values


class _MaxValues(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim):  # type: ignore[override]
        values, indices = x.max(dim=dim)
        ctx.save_for_backward(indices)
        ctx.shape, ctx.dim = x.shape, dim
        return values

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        (indices,) = ctx.saved_tensors
        dim = ctx.dim
        return grad.new_zeros(ctx.shape).scatter_(dim, indices.unsqueeze(dim), grad.unsqueeze(dim)), None
