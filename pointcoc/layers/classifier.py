"""The MLP classifier head of the point models."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from .activations import make_activation


def classifier_head(widths: Sequence[int], out_dim: int, activation: str, drop_rate: float) -> nn.Sequential:
    """``(Linear, BatchNorm1d, act, Dropout)`` per consecutive pair of ``widths``, then ``Linear`` to
    ``out_dim``: the official PointMLP/PointNet classifier layout (its module indices included)."""
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), make_activation(activation), nn.Dropout(drop_rate)]
    return nn.Sequential(*layers, nn.Linear(widths[-1], out_dim))
