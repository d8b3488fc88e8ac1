"""Point-cloud pictures: which kNN group (cluster) gathers each point, and which points each sampling keeps.

In PointMLP-CoC each stage samples anchors by farthest-point sampling, gathers the k nearest points of
each, and clusters inside every group around one center, the group mean: a group *is* a cluster. Groups
overlap, so a point is coloured by the group whose center it is most similar to (the similarity the
forward pass computed, read from :meth:`pointcoc.models.PointMLP.capture_clusters`); in models without
cluster blocks (PointMLP), by the nearest anchor among the groups that hold it. Points of the stage's set
that no group gathered stay grey.

A point-set CoC (:mod:`pointcoc.models.pointset_coc`) clusters the whole cloud at every stage: each point
has the colour of the center it joined, and each center's seed (its farthest-point anchor) is outlined.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..models.pointmlp import StageGroups
from ..models.pointset_coc import SetStageClusters
from .colors import CONTEXT, UNGROUPED, cluster_colors

CENTER_SIZE, POINT_SIZE, CONTEXT_SIZE = 2.5, 1.0, 0.5  # marker scales shared by the PNG and HTML views


@dataclass
class PointClusters:
    """One stage, block and head of one cloud."""

    points: np.ndarray  # [N, 3] the set the stage groups (input points for stage 0, else earlier anchors)
    owner: np.ndarray  # [N] group owning each point, -1 for points in no group
    anchors: np.ndarray  # [S] each group's anchor, an index into ``points``
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


def group_owner(neighbours: torch.Tensor, score: torch.Tensor, num_points: int) -> torch.Tensor:
    """``[num_points]``: for each point, the group (row of ``neighbours [S, K]``) where its ``score`` is
    highest; ties go to the higher group index, points in no group get -1."""
    idx, flat = neighbours.reshape(-1), score.reshape(-1).float()
    groups = torch.arange(neighbours.shape[0], device=idx.device).repeat_interleave(neighbours.shape[1])
    best = torch.full((num_points,), -torch.inf, device=idx.device).scatter_reduce(0, idx, flat, "amax")
    won = flat == best[idx]
    owner = torch.full((num_points,), -1, dtype=torch.long, device=idx.device)
    return owner.scatter_reduce(0, idx[won], groups[won], "amax")


def point_clusters(stages: dict[int, StageGroups], stage: int, block: int, head: int) -> PointClusters:
    """The picture data of ``(stage, block, head)`` for the first cloud of a captured batch."""
    groups = stages[stage]
    points, neighbours, anchors = groups.points[0], groups.neighbours[0], groups.anchor_idx[0]
    record = groups.blocks[block]
    if record is not None:
        score = record.similarity[0, :, head]
    else:  # no cluster block: the nearest anchor
        score = -(points[neighbours] - points[anchors][:, None]).norm(dim=-1)
    owner = group_owner(neighbours, score, points.shape[0])
    return PointClusters(
        points.cpu().numpy(), owner.cpu().numpy(), anchors.cpu().numpy(), neighbours.shape[1]
    )


def set_clusters(stage: SetStageClusters, block: int, head: int) -> PointClusters:
    """The picture data of one point-set CoC block and head for the first cloud of a captured batch."""
    return PointClusters(
        stage.points[0].cpu().numpy(),
        stage.assignments[block][0, head].cpu().numpy(),
        stage.anchor_idx[0].cpu().numpy(),
        stage.groups.shape[-1],
    )


def survival(stages: dict[int, StageGroups]) -> np.ndarray:
    """``[N]`` for the input points of the first cloud: how many sampling stages each one survived."""
    index = torch.arange(stages[0].points.shape[1])
    depth = torch.zeros_like(index)
    for s in sorted(stages):
        index = index[stages[s].anchor_idx[0].cpu()]
        depth[index] = s + 1
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
