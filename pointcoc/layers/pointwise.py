"""Per-point layers on channels-last point sets ``[..., N, C]``: 1x1 convolutions as ``Linear``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .activations import make_activation


class LinearBN(nn.Module):
    """Pointwise linear layer + BatchNorm over all leading dims of a channels-last tensor."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim, bias=bias)
        self.bn = nn.BatchNorm1d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return self.bn(y.reshape(-1, y.shape[-1])).reshape(y.shape)


class PointNorm(nn.BatchNorm1d):
    """BatchNorm over the channels of a channels-last ``[B, N, C]`` point set."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def shared_mlp(widths: Sequence[int], activation: str) -> nn.Sequential:
    """PointNet's shared per-point MLP: ``(LinearBN, act)`` per consecutive pair of ``widths``."""
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [LinearBN(a, b, bias=True), make_activation(activation)]
    return nn.Sequential(*layers)
