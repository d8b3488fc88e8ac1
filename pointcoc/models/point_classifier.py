"""What every point-cloud classifier here shares: its input layout, its checked input and its forward."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..utils.checks import channels_last_xyz, check_finite, check_input_layout, example_xyz
from .capture import CapturesClusters
from .model_cfg import ModelCfg


class PointClassifier(CapturesClusters, nn.Module):
    """Base of the point models: ``forward = classifier(forward_features(x))`` on xyz ``[B, N, 3]``
    (``input_layout="BCN"``: the official ``[B, 3, N]``).

    Subclasses build ``self.classifier`` and define ``forward_features``, which reads its input through
    :meth:`checked_xyz`. ``config`` holds the constructor arguments, to rebuild the model from a checkpoint
    (its ``aggregation``, the cluster normaliser, is declared in ``model_cfg``).
    Subclasses name their ``family`` (the defining module) and whether ``capture_clusters`` records clusters
    (their forward fills ``self._captured`` while it is set, see :class:`.capture.CapturesClusters`).
    """

    family: str = ""
    has_clusters: bool = True

    def __init__(self, config: dict, num_classes: int, num_points: int, input_layout: str) -> None:
        super().__init__()
        check_input_layout(input_layout)
        self.config = config
        self.num_classes, self.num_points, self.input_layout = num_classes, num_points, input_layout
        self.check_inputs = True  # False skips the finite check
        self.model_cfg = ModelCfg(
            architecture="", family=self.family, input_kind="points", num_classes=num_classes,
            input_size=(num_points, 3), has_clusters=self.has_clusters,
            aggregation=config.get("aggregation", "similarity"),
        )  # fmt: skip

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A random input of the configured size and layout (for FLOP counting, benchmarks, tracing)."""
        return example_xyz(batch_size, self.num_points, self.input_layout)

    def checked_xyz(self, x: torch.Tensor) -> torch.Tensor:
        """The input as ``[B, N, 3]``, refused in one line if mis-shaped or (``check_inputs``) not finite."""
        xyz = channels_last_xyz(x, self.input_layout)
        if self.check_inputs:
            check_finite("xyz", xyz)
        return xyz

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))
