"""PointNet family (Qi et al., CVPR 2017): the global-feature baseline the point recipes are compared with.

A shared per-point MLP, a max over points and an MLP classifier; ``pointnet`` adds the input transform
network (T-Net) that predicts a 3x3 alignment. Widths follow the paper (64, 64 | 64, 128, 1024 | 512, 256,
dropout 0.3). The 64x64 feature transform is left out: it needs an orthogonality loss term in the objective,
and the paper reports it adds 0.3 points on ModelNet40.
Layout as in :mod:`.pointmlp`: channels-last, so the paper's 1x1 convolutions are ``Linear`` layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .point_classifier import PointClassifier
from .pointmlp import LinearBN, classifier_head, make_activation
from .registry import register_model


def _shared_mlp(widths: Sequence[int], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [LinearBN(a, b, bias=True), make_activation(activation)]
    return nn.Sequential(*layers)


class InputTransform(nn.Module):
    """T-Net: a small PointNet that predicts a 3x3 matrix applied to the input points.

    The last layer starts at zero with an identity bias, so training starts from the identity alignment.
    """

    def __init__(self, activation: str) -> None:
        super().__init__()
        self.features = _shared_mlp((3, 64, 128, 1024), activation)
        self.head = classifier_head((1024, 512, 256), 9, activation, drop_rate=0.0)
        nn.init.zeros_(self.head[-1].weight)
        with torch.no_grad():
            self.head[-1].bias.copy_(torch.eye(3).flatten())

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        matrix = self.head(self.features(xyz).amax(dim=1)).view(-1, 3, 3)
        return xyz @ matrix


class PointNet(PointClassifier):
    """PointNet classifier. Input: xyz ``[B, N, 3]`` (``input_layout="BCN"``: ``[B, 3, N]``), any ``N``."""

    family = "pointnet"
    has_clusters = False  # no cluster blocks and no groups to draw

    def __init__(
        self,
        num_classes: int = 40,
        num_points: int = 1024,
        input_transform: bool = True,
        point_widths: Sequence[int] = (64, 64, 64, 128, 1024),
        head_widths: Sequence[int] = (512, 256),
        activation: str = "relu",
        drop_rate: float = 0.3,
        input_layout: str = "BNC",
    ) -> None:
        config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__(config, num_classes, num_points, input_layout)
        self.transform = InputTransform(activation) if input_transform else None
        self.features = _shared_mlp((3, *point_widths), activation)
        self.num_features = point_widths[-1]
        self.classifier = classifier_head(
            (self.num_features, *head_widths), num_classes, activation, drop_rate
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Global feature ``[B, num_features]`` (max over points)."""
        xyz = self.checked_xyz(x)
        if self.transform is not None:
            xyz = self.transform(xyz)
        return self.features(xyz).amax(dim=1)


@register_model
def pointnet(num_classes: int = 40, **kwargs) -> PointNet:
    """PointNet with the input transform (T-Net): 1.62 M parameters with 40 classes."""
    return PointNet(num_classes=num_classes, **kwargs)


@register_model
def pointnet_vanilla(num_classes: int = 40, **kwargs) -> PointNet:
    """PointNet without any transform network (the paper's 'vanilla' PointNet, 87.2% on ModelNet40)."""
    return PointNet(num_classes=num_classes, **{"input_transform": False, **kwargs})
