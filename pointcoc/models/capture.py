"""What ``model.capture_clusters()`` yields, for every model: each stage's clusters, read from the forward.

Every registered model has ``capture_clusters()`` (from :class:`CapturesClusters`)::

    with torch.no_grad(), model.capture_clusters() as stages:
        logits = model(x)
    stages[0].blocks[0].assignment  # [B, heads, *P]

``stages`` maps a stage index to its :class:`StageClusters`; it is filled by each forward inside the
``with`` (a later forward overwrites it) and stays empty for models without clusters
(``model.model_cfg.has_clusters`` is False). The assignments are the forward's own (the cluster mixers'
recorded results): nothing is clustered a second time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from ..cluster import ClusterResult
from ..layers import ClusterMixer, recording


@dataclass
class BlockClusters:
    """One cluster block's result for every point of its stage, heads unfolded.

    ``P`` is the layout of the stage's points: ``(H, W)``, the stage's feature map, for images; ``(N,)``,
    the stage's point set, for point clouds.
    """

    assignment: torch.Tensor  # long [B, heads, *P]: the center each point joined (see StageClusters)
    similarity: torch.Tensor  # float [B, heads, *P]: its sigmoid similarity to it, in (0, 1); 0 where -1


@dataclass
class StageClusters:
    """What one stage clustered.

    Images: ``assignment`` values are centers numbered row-major over the proposal grid *of the point's own
    region* (regions are clustered independently), in ``[0, centers)``; ``regions`` folds the map.
    Point clouds: ``assignment`` values index the stage's ``centers`` groups (``groups``, seeded by
    ``anchor_idx``). With ``within_groups`` each group is clustered on its own around its one center (the
    kNN groups of PointMLP-CoC): a point joins the center of every group that holds it, and ``assignment``
    names the group whose center it is most similar to (ties: the higher index), -1 where no group holds
    the point. Otherwise the groups only seed the centers, and every point joins one of them.
    ``blocks`` is empty for stages that group points but do not cluster them (PointMLP).
    """

    centers: int  # images: per region; point clouds: the stage's groups
    blocks: list[BlockClusters] = field(default_factory=list)  # one per cluster block, in order
    regions: tuple[int, int] = (1, 1)  # images: regions along (H, W)
    points: torch.Tensor | None = None  # [B, N_s, 3] point clouds: the points this stage clusters
    point_idx: torch.Tensor | None = None  # [B, N_s] which input points they are; None: all, in input order
    anchor_idx: torch.Tensor | None = None  # [B, centers] indices into ``points``: the seed of each group
    groups: torch.Tensor | None = None  # [B, centers, K] indices into ``points``: each anchor's kNN group
    within_groups: bool = False


def take_result(mixer: ClusterMixer) -> ClusterResult:
    """The mixer's recorded result of the last forward, freed from the mixer."""
    result, mixer.last_result = mixer.last_result, None
    return result


def group_owner(
    groups: torch.Tensor, score: torch.Tensor, num_points: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """For points gathered by overlapping groups: the group where each point scores highest.

    ``groups [B, M, K]`` indexes ``num_points`` points, ``score [B, H, M, K]`` scores each member (per
    head). Returns ``owner [B, H, num_points]`` (the group; ties go to the higher index; -1 where no group
    holds the point) and ``best [B, H, num_points]`` (its score; 0 where the owner is -1).
    """
    b, h, m, k = score.shape
    idx = groups.unsqueeze(1).expand(b, h, m, k).reshape(b, h, m * k)
    flat = score.reshape(b, h, m * k).float()
    best = flat.new_full((b, h, num_points), -torch.inf).scatter_reduce(2, idx, flat, "amax")
    won = flat == best.gather(2, idx)
    group = torch.arange(m, device=idx.device).repeat_interleave(k).expand(b, h, -1)
    none = torch.full_like(group, -1)
    owner = torch.full((b, h, num_points), -1, dtype=torch.long, device=idx.device)
    owner = owner.scatter_reduce(2, idx, torch.where(won, group, none), "amax")
    return owner, torch.where(owner >= 0, best, torch.zeros_like(best))


class CapturesClusters:
    """``capture_clusters()`` for a model whose forward fills ``self._captured`` (stage -> StageClusters)
    while it is not ``None``, reading its :meth:`cluster_mixers`' recorded results."""

    _captured: dict[int, StageClusters] | None = None

    def cluster_mixers(self) -> list[ClusterMixer]:
        """Every cluster mixer of the model, in forward order (none by default)."""
        return []

    @contextmanager
    def capture_clusters(self) -> Iterator[dict[int, StageClusters]]:
        """Record each stage's clusters in the forwards of the ``with`` (see :mod:`pointcoc.models.capture`);
        afterwards the mixers keep nothing. The forward fills the dict itself (no hooks), so it also works
        under activation checkpointing; run it eagerly, not through ``torch.compile``."""
        stages: dict[int, StageClusters] = {}
        self._captured = stages
        try:
            with recording(self.cluster_mixers()):
                yield stages
        finally:
            self._captured = None
