"""Activation layers by name, as the model constructors and configs spell them."""

from __future__ import annotations

import torch.nn as nn

_ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "gelu": nn.GELU,
    "rrelu": lambda: nn.RReLU(inplace=True),
    "selu": lambda: nn.SELU(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
    "leakyrelu": lambda: nn.LeakyReLU(inplace=True),
    "leakyrelu0.2": lambda: nn.LeakyReLU(0.2, inplace=True),
}


def make_activation(name: str) -> nn.Module:
    """A new activation module named ``name`` (case-insensitive), e.g. ``"relu"`` or ``"gelu"``."""
    if name.lower() not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name.lower()]()
