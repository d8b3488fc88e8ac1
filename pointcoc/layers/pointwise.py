"""Per-point layers on channels-last point sets ``[..., N, C]``: 1x1 convolutions as ``Linear``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils.autograd import grad_needed
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

    def forward_act(self, x: torch.Tensor, act: nn.Module | None) -> torch.Tensor:
        """``act(bn(fc(x)))`` with ``act`` (this layer's own or a sibling module) applied to the rows."""
        return self._norm(self.fc(x), act)

    def _norm(self, y: torch.Tensor, act: nn.Module | None) -> torch.Tensor:
        rows = self.bn(y.reshape(-1, y.shape[-1]))
        return (rows if act is None else act(rows)).view(y.shape)

    def forward_concat(self, x: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        """``forward(cat([x, shared repeated K times], -1))`` for ``x [..., K, A]``, ``shared [..., S]``.

        In training the concatenation is not built: ``fc``'s matrix is split and the shared part's product
        is computed once per row of ``shared``, then broadcast over K (the same function, 1 / (1 + A / S)
        of the products fewer). Evaluation concatenates, so that its products are the ones counted.
        """
        if grad_needed(x, shared, self.fc.weight):
            a = x.shape[-1]
            shared_part = F.linear(shared, self.fc.weight[:, a:], self.fc.bias).unsqueeze(-2)
            return self._norm(F.linear(x, self.fc.weight[:, :a]).add_(shared_part), self.act)
        return self(torch.cat([x, shared.unsqueeze(-2).expand(*x.shape[:-1], -1)], dim=-1))


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
