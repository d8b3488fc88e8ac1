"""Per-point layers on channels-last point sets ``[..., N, C]``: 1x1 convolutions as ``Linear``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ..utils.autograd import grad_needed, saved_tensors_used_once
from .activations import make_activation


class LinearBN(nn.Module):
    """Pointwise linear layer + BatchNorm (+ activation) over all leading dims of a channels-last tensor.

    ``activation`` (a name for :func:`make_activation`) is applied in place on the normalised rows before
    they are viewed back in the input's shape: an in-place activation applied to that view instead makes
    autograd copy the whole gradient through its base in backward (CopySlices; measured at 16% of a
    PointMLP-CoC training step). It holds no parameters, so the state-dict keys are ``fc.*`` and ``bn.*``.
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool, activation: str | None = None) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim, bias=bias)
        self.bn = nn.BatchNorm1d(out_dim)
        self.act = make_activation(activation) if activation is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_act(x, self.act)

    def forward_act(
        self, x: torch.Tensor, act: nn.Module | None, residual: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``act(bn(fc(x)) + residual)`` with ``act`` (this layer's own or a sibling module) applied to the
        rows; the residual is added in place on the normalised rows (BatchNorm's backward does not read its
        output), which saves a full-size tensor per residual unit.

        A BatchNorm that normalises with its running statistics (evaluation) is an affine map per channel:
        it is folded into ``fc``'s matrix and bias, one product with the same MACs and no normalisation
        pass (PointMLP inference at ``[98304, 128] x [128, 128]``: 51 instead of 75 ms per layer)."""
        affine = _running_affine(self.bn, x)
        if affine is None:
            return self.norm_act(self.fc(x), act, residual)
        scale, shift = affine
        bias = shift if self.fc.bias is None else torch.addcmul(shift, self.fc.bias, scale)
        rows = torch.addmm(bias, x.reshape(-1, x.shape[-1]), (self.fc.weight * scale.unsqueeze(-1)).t())
        return _add_act(rows, act, residual).view(*x.shape[:-1], -1)

    def norm_act(
        self, y: torch.Tensor, act: nn.Module | None, residual: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The layer after ``fc``: ``act(bn(y) + residual)`` on the rows of ``y`` (an ``fc`` output)."""
        if residual is None and _fused_relu(self.bn, act, y):
            bn = self.bn
            return _BatchNormReLU.apply(y.reshape(-1, y.shape[-1]), bn.weight, bn.bias, bn).view(y.shape)
        return _add_act(self.bn(y.reshape(-1, y.shape[-1])), act, residual).view(y.shape)

    def forward_concat(self, x: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        """``forward(cat([x, shared repeated K times], -1))`` for ``x [..., K, A]``, ``shared [..., S]``.

        In training the concatenation is not built: ``fc``'s matrix is split and the shared part's product
        is computed once per row of ``shared``, then broadcast over K (the same function, 1 / (1 + A / S)
        of the products fewer). Evaluation concatenates, so that its products are the ones counted.
        """
        if grad_needed(x, shared, self.fc.weight):
            a = x.shape[-1]
            shared_part = F.linear(shared, self.fc.weight[:, a:], self.fc.bias).unsqueeze(-2)
            return self.norm_act(F.linear(x, self.fc.weight[:, :a]).add_(shared_part), self.act)
        return self(torch.cat([x, shared.unsqueeze(-2).expand(*x.shape[:-1], -1)], dim=-1))


def _add_act(rows: torch.Tensor, act: nn.Module | None, residual: torch.Tensor | None) -> torch.Tensor:
    """``act(rows + residual)`` on normalised rows ``[R, C]``, the addition in place."""
    if residual is not None:
        rows = rows.add_(residual.reshape(rows.shape))
    return rows if act is None else act(rows)


def _running_affine(bn: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(scale, shift)`` with ``bn(y) = y * scale + shift`` per channel when ``bn`` is a plain BatchNorm1d
    normalising with its running statistics (evaluation) of a float32/float64 input, not under autocast;
    else None. (In half precision BatchNorm normalises in float32 after the product: folded, the scaled
    matrix would be rounded to half instead.)"""
    if type(bn) is not nn.BatchNorm1d or bn.training or bn.running_mean is None or bn.running_var is None:
        return None
    if x.dtype not in (torch.float32, torch.float64) or torch.is_autocast_enabled(x.device.type):
        return None
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = bn.running_mean * -scale
    return scale, shift if bn.bias is None else shift + bn.bias


def _fused_relu(bn: nn.Module, act: nn.Module | None, y: torch.Tensor) -> bool:
    """Whether :class:`_BatchNormReLU` can stand for ``act(bn(y))``: a training step of a plain affine
    BatchNorm1d with a momentum (not SyncBatchNorm, not under autocast) followed by a ReLU."""
    return (
        type(bn) is nn.BatchNorm1d
        and type(act) is nn.ReLU
        and bn.training
        and bn.affine
        and bn.track_running_stats
        and bn.momentum is not None
        and grad_needed(y, bn.weight)
        and not torch.is_autocast_enabled(y.device.type)
    )


def _bn_relu_train(
    rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, bn: nn.BatchNorm1d, residual=None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``relu(bn(rows) (+ residual))`` of a training step (running statistics updated as ``bn`` does), with
    the batch mean and inverse std."""
    bn.num_batches_tracked.add_(1)
    out, mean, invstd = torch.native_batch_norm(
        rows, weight, bias, bn.running_mean, bn.running_var, True, bn.momentum, bn.eps
    )
    if residual is not None:
        out.add_(residual)
    return out.relu_(), mean, invstd


class _BatchNormGrad(NamedTuple):
    """BatchNorm's backward in training from its output gradient ``g`` and input ``y``, as per-channel maps:
    ``dy = scale * g + slope * y + offset``, and the weight and bias gradients."""

    scale: torch.Tensor
    slope: torch.Tensor
    offset: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    @classmethod
    def of(cls, g, y, weight, mean, invstd, eps) -> _BatchNormGrad:
        # BatchNorm's own backward for the reductions only (sum(g * xhat), sum(g)): no [R, C] output
        _, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            g, y, weight, None, None, mean, invstd, True, eps, [False, True, True]
        )
        scale = weight * invstd
        slope = scale * invstd * grad_weight / -y.shape[0]
        offset = -(slope * mean + scale * grad_bias / y.shape[0])
        return cls(scale, slope, offset, grad_weight, grad_bias)

    def input_grad_(self, g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``dy`` written over ``g``."""
        return g.mul_(self.scale).addcmul_(y, self.slope).add_(self.offset)

    def input_grad(self, g: torch.Tensor, y: torch.Tensor, over_y: bool = False) -> torch.Tensor:
        """``dy`` as a new tensor, or written over ``y`` (``over_y``); ``g`` kept."""
        return torch.addcmul(self.offset, y, self.slope, out=y if over_y else None).addcmul_(g, self.scale)


def _relu_grad_(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The ReLU's backward written over ``grad`` (``out``: the ReLU's output)."""
    return torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad)


class _BatchNormReLU(torch.autograd.Function):
    """``relu(bn(rows))`` in training whose backward allocates one ``[R, C]`` tensor, not two.

    Autograd's ReLU backward writes the masked gradient to a new tensor and BatchNorm's backward its result
    to another; here BatchNorm's reductions are taken from the masked gradient and its input gradient is
    then written over it (:class:`_BatchNormGrad`).
    """

    @staticmethod
    def forward(ctx, rows, weight, bias, bn):  # type: ignore[override]
        out, mean, invstd = _bn_relu_train(rows, weight, bias, bn)
        ctx.save_for_backward(rows, weight, mean, invstd, out)
        ctx.eps = bn.eps
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        rows, weight, mean, invstd, out = ctx.saved_tensors
        masked = torch.ops.aten.threshold_backward(grad, out, 0)
        bn_grad = _BatchNormGrad.of(masked, rows, weight, mean, invstd, ctx.eps)
        return bn_grad.input_grad_(masked, rows), bn_grad.weight, bn_grad.bias, None


def residual_unit(x: torch.Tensor, net1: LinearBN, net2: LinearBN, act: nn.Module) -> torch.Tensor:
    """``act(net2(net1(x)) + x)`` (PointMLP's residual MLP; ``net1`` has its own activation).

    With ReLUs, in training, as one function whose backward allocates two ``[R, C]`` tensors where
    autograd's takes six (the ReLU masks, the BatchNorms' input gradients and the residual's accumulation):
    the first mask takes the residual's sum in place, the second BatchNorm's input gradient is written over
    that BatchNorm's saved input (the function's own, read for the last time; not when the graph is retained)
    and the first one's over the mask that precedes it. Other cases (evaluation, other norms or
    activations) compose the layers."""
    if not fused_unit(x, net1, net2, act):
        return net2.forward_act(net1(x), act, residual=x)
    return _ResidualUnit.apply(x, *_unit_args(net1, net2))


def fused_unit(x: torch.Tensor, net1: LinearBN, net2: LinearBN, act: nn.Module) -> bool:
    """Whether :func:`residual_unit` runs as its one function (:class:`_ResidualUnit`) on ``x``."""
    return _fused_relu(net1.bn, net1.act, x) and _fused_relu(net2.bn, act, x)


def _unit_args(net1: LinearBN, net2: LinearBN) -> tuple:
    return (
        net1.fc.weight, net1.fc.bias, net1.bn.weight, net1.bn.bias,
        net2.fc.weight, net2.fc.bias, net2.bn.weight, net2.bn.bias, net1.bn, net2.bn,
    )  # fmt: skip


class _ResidualUnit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w1, b1, gamma1, beta1, w2, b2, gamma2, beta2, bn1, bn2):  # type: ignore[override]
        rows = x.reshape(-1, x.shape[-1])
        h1 = F.linear(rows, w1, b1)
        a1, mean1, invstd1 = _bn_relu_train(h1, gamma1, beta1, bn1)
        h2 = F.linear(a1, w2, b2)
        out, mean2, invstd2 = _bn_relu_train(h2, gamma2, beta2, bn2, residual=rows)
        ctx.save_for_backward(rows, w1, gamma1, h1, a1, mean1, invstd1, w2, gamma2, h2, out, mean2, invstd2)
        ctx.eps, ctx.biases = (bn1.eps, bn2.eps), (b1 is not None, b2 is not None)
        return out.view(x.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        rows, w1, gamma1, h1, a1, mean1, invstd1, w2, gamma2, h2, out, mean2, invstd2 = ctx.saved_tensors
        masked = torch.ops.aten.threshold_backward(grad.reshape(out.shape), out, 0)  # also the residual's
        bn2 = _BatchNormGrad.of(masked, h2, gamma2, mean2, invstd2, ctx.eps[1])
        # h2 is this function's own: overwritten unless the graph is kept for another backward
        grad_h2 = bn2.input_grad(masked, h2, over_y=saved_tensors_used_once())
        grad_w2, grad_b2 = grad_h2.t().mm(a1), grad_h2.sum(0) if ctx.biases[1] else None
        grad_a1 = _relu_grad_(grad_h2.mm(w2), a1)
        del grad_h2
        bn1 = _BatchNormGrad.of(grad_a1, h1, gamma1, mean1, invstd1, ctx.eps[0])
        grad_h1 = bn1.input_grad_(grad_a1, h1)
        grad_w1, grad_b1 = grad_h1.t().mm(rows), grad_h1.sum(0) if ctx.biases[0] else None
        grad_x = masked.addmm_(grad_h1, w1)
        return (
            grad_x.view(grad.shape), grad_w1, grad_b1, bn1.weight, bn1.bias,
            grad_w2, grad_b2, bn2.weight, bn2.bias, None, None,
        )  # fmt: skip


class PointNorm(nn.BatchNorm1d):
    """BatchNorm over the channels of a channels-last ``[B, N, C]`` point set."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class SharedMLP(nn.Sequential):
    """PointNet's shared per-point MLP: ``(LinearBN, activation)`` pairs, each activation applied to its
    layer's normalised rows (:meth:`LinearBN.forward_act`, for the reason given there; as a plain
    sequence, a training step of PointNet took 1.18x and of pointset_coc_vanilla 1.12x as long). The
    children, and so the state-dict keys, are the plain sequence's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self)
        for layer, act in zip(layers[0::2], layers[1::2]):
            x = layer.forward_act(x, act)
        return x


def shared_mlp(widths: Sequence[int], activation: str) -> SharedMLP:
    """PointNet's shared per-point MLP: ``(LinearBN, act)`` per consecutive pair of ``widths``."""
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [LinearBN(a, b, bias=True), make_activation(activation)]
    return SharedMLP(*layers)
