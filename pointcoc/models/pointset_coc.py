"""Point-set Context Clusters: the paper's "set of points" view applied to a raw point cloud.

PointMLP-CoC (:mod:`.pointmlp`) clusters inside small kNN groups with one center each. Here, as in the image
models, every block clusters the whole cloud: a few centers are proposed by pooling the features of spatial
groups (farthest-point anchors and their nearest neighbours, found once per stage from the input cloud) and
every point joins its most similar center, wherever it lies. The rest is PointNet's: an optional input
transform (T-Net), a shared per-point MLP before the blocks, a wide per-point layer and a max over points
after them, and the same classifier head. Stages change the width but keep every point; their centers get
fewer and larger from stage to stage.

No official counterpart: this family is ours. On the CPU ModelNet10 budget it learns almost as fast as
PointNet, where the narrow PointMLP-CoC does not (``experiments/results/modelnet10.md``).
Layout as in :mod:`.pointmlp`: channels-last, so pointwise layers are ``Linear``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..cluster import Aggregation
from ..layers import SetClusterMixer, recording
from ..ops import farthest_point_sample, gather_points, knn_points
from .context_cluster import DropPath
from .point_classifier import PointClassifier, check_per_stage
from .pointmlp import LinearBN, classifier_head, make_activation
from .pointnet import InputTransform
from .registry import register_model


class PointNorm(nn.BatchNorm1d):
    """BatchNorm over the channels of a channels-last ``[B, N, C]`` point set."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class SetClusterBlock(nn.Module):
    """``x + drop_path(mixer(norm(x)))``, then ``x + drop_path(mlp(norm(x)))``: the image block on points."""

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        mlp_ratio: float,
        activation: str,
        drop_path: float,
        aggregation: Aggregation = "similarity",
    ) -> None:
        super().__init__()
        self.norm1 = PointNorm(dim)
        self.token_mixer = SetClusterMixer(dim, heads=heads, head_dim=head_dim, aggregation=aggregation)
        self.norm2 = PointNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), make_activation(activation), nn.Linear(hidden, dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.token_mixer(self.norm1(x), groups))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def spatial_groups(xyz: torch.Tensor, centers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Farthest-point anchors ``[B, centers]`` and their groups ``[B, centers, N // centers]``: each anchor's
    nearest points, itself included (indices into ``xyz``).

    The groups cover the cloud roughly evenly, as the image model's pooling windows tile the grid.
    """
    anchor_idx = farthest_point_sample(xyz, centers)
    return anchor_idx, knn_points(gather_points(xyz, anchor_idx), xyz, max(1, xyz.shape[1] // centers))


@dataclass
class SetStageClusters:
    """What one stage clustered (see :meth:`PointSetCoC.capture_clusters`)."""

    points: torch.Tensor  # [B, N, 3] the input cloud: every stage keeps every point
    anchor_idx: torch.Tensor  # [B, M] the farthest-point anchors that seed the M centers
    groups: torch.Tensor  # [B, M, K] the points each center is pooled from
    assignments: list[torch.Tensor]  # per block: [B, heads, N] the center each point joined


class PointSetCoC(PointClassifier):
    """Point-set Context Cluster classifier. Input: xyz ``[B, N, 3]`` (``"BCN"``: ``[B, 3, N]``), any ``N``.

    ``dims``, ``depths``, ``centers``, ``heads`` and ``head_dims`` give one value per stage; ``centers`` must
    not exceed the number of points.
    """

    family = "pointset_coc"

    def __init__(
        self,
        num_classes: int = 40,
        num_points: int = 1024,
        input_transform: bool = True,
        embed_dims: Sequence[int] = (64, 64),
        dims: Sequence[int] = (64, 128),
        depths: Sequence[int] = (1, 1),
        centers: Sequence[int] = (16, 8),
        heads: Sequence[int] = (4, 4),
        head_dims: Sequence[int] = (16, 32),
        mlp_ratio: float = 2.0,
        feature_dim: int = 1024,
        head_widths: Sequence[int] = (512, 256),
        activation: str = "relu",
        drop_path_rate: float = 0.0,
        drop_rate: float = 0.3,
        aggregation: Aggregation = "similarity",
        input_layout: str = "BNC",
    ) -> None:
        config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__(config, num_classes, num_points, input_layout)
        check_per_stage(dims=dims, depths=depths, centers=centers, heads=heads, head_dims=head_dims)
        if min(centers) < 1:
            raise ValueError(f"centers must be positive, got {list(centers)}")
        self.centers = list(centers)
        self._captured: dict[int, SetStageClusters] | None = None  # filled inside capture_clusters()

        self.transform = InputTransform(activation) if input_transform else None
        widths = (3, *embed_dims)
        self.embed = nn.Sequential(
            *[
                m
                for a, b in zip(widths[:-1], widths[1:])
                for m in (LinearBN(a, b, True), make_activation(activation))
            ]
        )
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.transitions, self.stages = nn.ModuleList(), nn.ModuleList()
        width = widths[-1]
        for i, dim in enumerate(dims):
            self.transitions.append(
                nn.Identity()
                if dim == width
                else nn.Sequential(LinearBN(width, dim, True), make_activation(activation))
            )
            first = sum(depths[:i])
            self.stages.append(
                nn.ModuleList(
                    SetClusterBlock(
                        dim, heads[i], head_dims[i], mlp_ratio, activation, rates[first + j], aggregation
                    )
                    for j in range(depths[i])
                )
            )
            width = dim
        self.lift = nn.Sequential(LinearBN(width, feature_dim, True), make_activation(activation))
        self.num_features = feature_dim
        self.classifier = classifier_head((feature_dim, *head_widths), num_classes, activation, drop_rate)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Global feature ``[B, num_features]`` (max over points)."""
        xyz = self.checked_xyz(x)
        # The groups come from the input cloud: a learned alignment changes the features, not the centers.
        feats = self.embed(xyz if self.transform is None else self.transform(xyz))
        for s, (centers, transition, blocks) in enumerate(zip(self.centers, self.transitions, self.stages)):
            anchor_idx, groups = spatial_groups(xyz, centers)
            feats = transition(feats)
            for block in blocks:
                feats = block(feats, groups)
            if self._captured is not None:
                self._captured[s] = SetStageClusters(
                    xyz.detach(), anchor_idx, groups, self._assignments(blocks)
                )
        return self.lift(feats).amax(dim=1)

    @staticmethod
    def _assignments(blocks: nn.ModuleList) -> list[torch.Tensor]:
        out = []
        for block in blocks:
            mixer = block.token_mixer
            n = mixer.last_result.assignment.shape[-1]  # heads folded into the batch as (b, head)
            out.append(mixer.last_result.assignment.reshape(-1, mixer.heads, n))
            mixer.last_result = None  # free what the assignment was read from
        return out

    @contextmanager
    def capture_clusters(self) -> Iterator[dict[int, SetStageClusters]]:
        """Record each stage's anchors, groups and per-block assignments in the forwards of the ``with``.

        Yields a dict filled by each forward with ``stage -> SetStageClusters``, read from the forward
        itself (nothing is recomputed); a later forward overwrites it::

            with model.capture_clusters() as stages:
                model(xyz)
            stages[0].assignments[0]  # [B, heads, N], values in [0, centers[0])
        """
        stages: dict[int, SetStageClusters] = {}
        self._captured = stages
        try:
            with recording(block.token_mixer for blocks in self.stages for block in blocks):
                yield stages
        finally:
            self._captured = None


@register_model
def pointset_coc(num_classes: int = 40, **kwargs) -> PointSetCoC:
    """T-Net, two stages (64, 128 wide; 16, 8 centers; one block each): 1.76 M parameters at 40 classes."""
    return PointSetCoC(num_classes=num_classes, **kwargs)


@register_model
def pointset_coc_vanilla(num_classes: int = 40, **kwargs) -> PointSetCoC:
    """``pointset_coc`` without the input transform, as ``pointnet_vanilla`` is PointNet without it."""
    return PointSetCoC(num_classes=num_classes, **{"input_transform": False, **kwargs})
