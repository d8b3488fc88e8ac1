"""Point-set Context Clusters: the paper's "set of points" view applied to a raw point cloud.

PointMLP-CoC clusters inside small kNN groups with one center each. Here, as in the image
models, every block clusters the whole cloud: a few centers are proposed by pooling the features of spatial
groups (farthest-point anchors and their nearest neighbours, found once per stage from the input cloud) and
every point joins its most similar center, wherever it lies. The rest is PointNet's: an optional input
transform (T-Net), a shared per-point MLP before the blocks, a wide per-point layer and a max over points
after them, and the same classifier head. Stages change the width but keep every point; their centers get
fewer and larger from stage to stage.

No official counterpart: this family is ours. On the CPU ModelNet10 budget it learns almost as fast as
PointNet, where the narrow PointMLP-CoC does not (``experiments/results/modelnet10.md``).
Channels-last, as every point model here: pointwise layers are ``Linear``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from ..cluster import Aggregation
from ..layers import (
    ClusterMixer,
    DropPath,
    InputTransform,
    PointNorm,
    SetClusterMixer,
    check_per_stage,
    classifier_head,
    make_activation,
    shared_mlp,
)
from ..ops import farthest_point_sample, gather_points, knn_points
from .capture import BlockClusters, StageClusters, take_result
from .point_classifier import PointClassifier
from .registry import register_model


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
        # On rows: nn.Linear's output for a [B, N, C] input is a view, and the in-place activation on a
        # view would route the gradient through CopySlices in backward.
        return x + self.drop_path(self.mlp(self.norm2(x).reshape(-1, x.shape[-1])).view(x.shape))


def spatial_groups(
    xyz: torch.Tensor, centers: int, fps: Callable[..., torch.Tensor] = farthest_point_sample
) -> tuple[torch.Tensor, torch.Tensor]:
    """Farthest-point anchors ``[B, centers]`` (sampled by ``fps``) and their groups ``[B, centers,
    N // centers]``: each anchor's nearest points, itself included (indices into ``xyz``).

    The groups cover the cloud roughly evenly, as the image model's pooling windows tile the grid.
    """
    anchor_idx = fps(xyz, centers)
    return anchor_idx, knn_points(gather_points(xyz, anchor_idx), xyz, max(1, xyz.shape[1] // centers))


class PointSetCoC(PointClassifier):
    """Point-set Context Cluster classifier. Input: xyz ``[B, N, 3]`` (``"BCN"``: ``[B, 3, N]``), any ``N``.

    ``dims``, ``depths``, ``centers``, ``heads`` and ``head_dims`` give one value per stage; ``centers`` must
    not exceed the number of points. ``fps_op`` samples the anchors:
    :func:`pointcoc.ops.farthest_point_sample`, or any function of its form.
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
        self.fps_op = farthest_point_sample

        self.transform = InputTransform(activation) if input_transform else None
        widths = (3, *embed_dims)
        self.embed = shared_mlp(widths, activation)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.transitions, self.stages = nn.ModuleList(), nn.ModuleList()
        width = widths[-1]
        for i, dim in enumerate(dims):
            self.transitions.append(nn.Identity() if dim == width else shared_mlp((width, dim), activation))
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
        self.lift = shared_mlp((width, feature_dim), activation)
        self.num_features = feature_dim
        self.classifier = classifier_head((feature_dim, *head_widths), num_classes, activation, drop_rate)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Global feature ``[B, num_features]`` (max over points)."""
        xyz = self.checked_xyz(x)
        # The groups come from the input cloud: a learned alignment changes the features, not the centers.
        feats = self.embed(xyz if self.transform is None else self.transform(xyz))
        for s, (centers, transition, blocks) in enumerate(zip(self.centers, self.transitions, self.stages)):
            anchor_idx, groups = spatial_groups(xyz, centers, self.fps_op)
            feats = transition(feats)
            for block in blocks:
                feats = block(feats, groups)
            if self._captured is not None:
                self._captured[s] = StageClusters(
                    centers, [_set_block(block.token_mixer) for block in blocks], points=xyz.detach(),
                    anchor_idx=anchor_idx, groups=groups,
                )  # fmt: skip
        return self.lift(feats).amax(dim=1)

    def cluster_mixers(self) -> list[ClusterMixer]:
        return [block.token_mixer for blocks in self.stages for block in blocks]


def _set_block(mixer: SetClusterMixer) -> BlockClusters:
    """The mixer's recorded result (heads folded into the batch as ``(b, head)``) as ``[B, heads, N]``."""
    result = take_result(mixer)
    n = result.assignment.shape[-1]
    return BlockClusters(
        result.assignment.reshape(-1, mixer.heads, n), result.similarity.reshape(-1, mixer.heads, n)
    )


@register_model
def pointset_coc(num_classes: int = 40, **kwargs) -> PointSetCoC:
    """T-Net, two stages (64, 128 wide; 16, 8 centers; one block each): 1.76 M parameters at 40 classes."""
    return PointSetCoC(num_classes=num_classes, **kwargs)


@register_model
def pointset_coc_vanilla(num_classes: int = 40, **kwargs) -> PointSetCoC:
    """``pointset_coc`` without the input transform, as ``pointnet_vanilla`` is PointNet without it."""
    return PointSetCoC(num_classes=num_classes, **{"input_transform": False, **kwargs})
