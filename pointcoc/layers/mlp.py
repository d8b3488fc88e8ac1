"""The channel MLP of the image blocks."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn


class Mlp(nn.Module):
    """``fc2(drop(act(fc1(x))))`` over the channels of a channels-last map ``[B, H, W, C]``."""

    def __init__(self, dim: int, hidden: int, act_layer: Callable[[], nn.Module], drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
