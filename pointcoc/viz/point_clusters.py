"""Point-cloud pictures: which cluster gathers each point, and which points each sampling keeps.

Everything is read from the model's ``capture_clusters()`` (:mod:`pointcoc.models.capture`): each point has
the colour of the center it joined and each center's seed (its farthest-point anchor) is outlined. In
PointMLP-CoC a kNN group *is* a cluster (one center, the group mean); groups overlap, so a point has the
colour of the group whose center it is most similar to (the similarity the forward pass computed); in
models that group without clustering (PointMLP), of its nearest anchor's group. Points of the stage's set
that no group gathered stay grey. A point-set CoC clusters the whole cloud at every stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..models import StageClusters
from ..models.capture import group_owner
from .colors import CONTEXT, UNGROUPED, cluster_colors

CENTER_SIZE, POINT_SIZE, CONTEXT_SIZE = 2.5, 1.0, 0.5  # marker scales shared by the PNG and HTML views


@dataclass
class PointClusters:
    """One stage, block and head of one cloud."""

    points: np.ndarray  # [N, 3] the stage's points (the input, or the earlier anchors of a sampling model)
    owner: np.ndarray  # [N] the center (group) each point joined, -1 for points in no group
    anchors: np.ndarray  # [M] the anchor seeding each center's group, an index into ``points``
    group_size: int  # k

    @property
    def num_groups(self) -> int:
        return len(self.anchors)


@dataclass
class PointLayer:
    """Points ready to draw: what the PNG and the interactive HTML view both render."""

    name: str
    points: np.ndarray  # [N, 3]
    colors: np.ndarray  # [N, 3] uint8
    sizes: np.ndarray  # [N] marker scale, 1 for an ordinary point
    outlined: np.ndarray  # [N] bool: drawn with a dark edge (the groups' anchors)


def point_clusters(stage: StageClusters, block: int, head: int) -> PointClusters:
    """The picture data of ``block`` and ``head`` of a captured point stage, for the batch's first cloud;
    a stage without cluster blocks has one "block": its groups, each point in its nearest anchor's."""
    points, anchors, groups = stage.points[0], stage.anchor_idx[0], stage.groups[0]
    if stage.blocks:
        owner = stage.blocks[block].assignment[0, head]
    else:
        score = -(points[groups] - points[anchors][:, None]).norm(dim=-1)
        owner = group_owner(groups[None], score[None, None], points.shape[0])[0][0, 0]
    return PointClusters(points.cpu().numpy(), owner.cpu().numpy(), anchors.cpu().numpy(), groups.shape[-1])


def outside(stage: StageClusters, cloud: np.ndarray) -> np.ndarray:
    """The points of the input ``cloud`` ``[N, 3]`` that are not among the stage's points (first cloud)."""
    if stage.point_idx is None:
        return cloud[:0]
    keep = np.ones(len(cloud), dtype=bool)
    keep[stage.point_idx[0].cpu().numpy()] = False
    return cloud[keep]


def keeps_every_point(stages: dict[int, StageClusters]) -> bool:
    """Whether every stage clusters the whole input cloud (no stage works on a sample of it)."""
    return all(stage.point_idx is None for stage in stages.values())


def survival(stages: dict[int, StageClusters], num_points: int) -> np.ndarray:
    """``[num_points]`` for the input points of the first cloud: how many stages' anchor samplings each one
    survived (a point is kept by stage ``s`` when it is one of its anchors)."""
    depth = torch.zeros(num_points, dtype=torch.long)
    for s in sorted(stages):
        stage = stages[s]
        index = torch.arange(num_points) if stage.point_idx is None else stage.point_idx[0].cpu()
        depth[index[stage.anchor_idx[0].cpu()]] = s + 1
    return depth.numpy()


def cluster_layer(clusters: PointClusters, context: np.ndarray, name: str) -> PointLayer:
    """The stage's set coloured by owning group over the ``context`` points in light grey; each anchor is
    outlined and drawn in its own group's colour, so every group shows, also one that owns no point."""
    palette = cluster_colors(clusters.num_groups)
    colors = np.where((clusters.owner >= 0)[:, None], palette[clusters.owner], UNGROUPED).astype(np.uint8)
    colors[clusters.anchors] = palette
    sizes = np.full(len(clusters.points), POINT_SIZE)
    sizes[clusters.anchors] = CENTER_SIZE
    outlined = np.zeros(len(clusters.points), dtype=bool)
    outlined[clusters.anchors] = True
    return PointLayer(
        name,
        np.concatenate([context, clusters.points]),
        np.concatenate([np.tile(np.asarray(CONTEXT, np.uint8), (len(context), 1)), colors]),
        np.concatenate([np.full(len(context), CONTEXT_SIZE), sizes]),
        np.concatenate([np.zeros(len(context), dtype=bool), outlined]),
    )


def survival_layer(points: np.ndarray, depth: np.ndarray, stages: int) -> PointLayer:
    """Input points coloured by how many samplings they survived: grey none, the last colour all."""
    from matplotlib import colormaps

    ramp = (np.asarray(colormaps["viridis"](np.linspace(0, 1, stages))[:, :3]) * 255).round().astype(np.uint8)
    colors = np.concatenate([np.asarray([CONTEXT], np.uint8), ramp])[depth]
    sizes = np.where(depth > 0, POINT_SIZE + depth * (CENTER_SIZE - POINT_SIZE) / stages, CONTEXT_SIZE)
    return PointLayer(
        f"sampling: kept by 0 (grey) .. {stages} (yellow) stages",
        points, colors, sizes, np.zeros(len(points), dtype=bool),
    )  # fmt: skip
