"""PointNet's input transform network (T-Net)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .classifier import classifier_head
from .pointwise import shared_mlp


class InputTransform(nn.Module):
    """T-Net: a small PointNet that predicts a 3x3 matrix applied to the input points ``[B, N, 3]``.

    The last layer starts at zero with an identity bias, so training starts from the identity alignment.
    """

    def __init__(self, activation: str) -> None:
        super().__init__()
        self.features = shared_mlp((3, 64, 128, 1024), activation)
        self.head = classifier_head((1024, 512, 256), 9, activation, drop_rate=0.0)
        nn.init.zeros_(self.head[-1].weight)
        with torch.no_grad():
            self.head[-1].bias.copy_(torch.eye(3).flatten())

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        matrix = self.head(self.features(xyz).amax(dim=1)).view(-1, 3, 3)
        return xyz @ matrix
