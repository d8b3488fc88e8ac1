"""PointNet family (Qi et al., CVPR 2017): the global-feature baseline the point recipes are compared with.

A shared per-point MLP, a max over points and an MLP classifier; ``pointnet`` adds the input transform
network (T-Net) that predicts a 3x3 alignment. Widths follow the paper (64, 64 | 64, 128, 1024 | 512, 256,
dropout 0.3). The 64x64 feature transform is left out: it needs an orthogonality loss term in the objective,
and the paper reports it adds 0.3 points on ModelNet40.
Channels-last, as every point model here: the paper's 1x1 convolutions are ``Linear`` layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..layers import InputTransform, classifier_head, shared_mlp
from .point_classifier import PointClassifier
from .registry import register_model


class PointNet(PointClassifier):
    """PointNet classifier. Input: xyz ``[B, N, 3]`` (``input_layout="BCN"``: ``[B, 3, N]``), any ``N``."""

    family = "pointnet"
    has_clusters = False  # no cluster blocks and no groups: capture_clusters() yields nothing

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
        self.features = shared_mlp((3, *point_widths), activation)
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
