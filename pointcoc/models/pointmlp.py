"""PointMLP family: PointMLP, PointMLP-Elite and PointMLP-CoC (context clusters before each residual unit).

Layout: point features are kept channels-last (``[B, N, C]`` and ``[B, G, K, C]``) throughout, so the
official 1x1 ``Conv1d`` layers are ``Linear`` layers here (same weights, squeezed) and no permutes are
needed around the cluster blocks. Official checkpoints convert with :func:`convert_official_state_dict`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..cluster import Aggregation
from ..layers import (
    ClusterMixer,
    GroupClusterMixer,
    LinearBN,
    check_per_stage,
    classifier_head,
    cluster_residual_unit,
    make_activation,
    max_values,
    residual_unit,
)
from ..ops import farthest_point_sample, gather_points, gather_points_shifted, gather_points_sum, knn_points
from ..utils.autograd import grad_needed
from .capture import BlockClusters, StageClusters, group_owner, take_result
from .point_classifier import PointClassifier
from .registry import register_model


class ResidualMLP(nn.Module):
    """``act(bn2(fc2(act(bn1(fc1(x))))) + x)``: PointMLP's residual point MLP."""

    def __init__(self, dim: int, expansion: float, bias: bool, activation: str) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.net1 = LinearBN(dim, hidden, bias, activation)
        self.net2 = LinearBN(hidden, dim, bias)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return residual_unit(x, self.net1, self.net2, self.act)


class LocalGrouper(nn.Module):
    """FPS anchors + kNN groups, with PointMLP's geometric affine normalisation.

    Returns the anchors ``[B, S]`` and their kNN groups ``[B, S, K]`` (indices into the ``N`` points), the
    normalised neighbours ``[B, S, K, C (+3)]`` and the anchors' own features ``[B, S, C]``; the official
    grouper concatenates the two (each anchor repeated K times), which :meth:`LinearBN.forward_concat`
    does or avoids. ``fps_skip_near_origin``: sample anchors as pointnet2_ops' kernel does (see
    :func:`pointcoc.ops.farthest_point_sample`). ``fps_op`` samples them: that function, or any function of
    its ``(points, num_samples, skip_near_origin=...)`` form.
    """

    def __init__(
        self,
        channels: int,
        samples: int,
        k: int,
        use_xyz: bool,
        normalize: str | None,
        fps_skip_near_origin: bool = False,
    ) -> None:
        super().__init__()
        if normalize not in (None, "center", "anchor"):
            raise ValueError(f"normalize must be 'center', 'anchor' or None, got {normalize!r}")
        self.samples, self.k, self.use_xyz, self.normalize = samples, k, use_xyz, normalize
        self.fps_skip_near_origin = fps_skip_near_origin
        self.fps_op = farthest_point_sample
        if normalize is not None:
            width = channels + (3 if use_xyz else 0)
            self.affine_alpha = nn.Parameter(torch.ones(1, 1, 1, width))
            self.affine_beta = nn.Parameter(torch.zeros(1, 1, 1, width))

    def sample(self, xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """FPS anchors ``[B, S]`` and their kNN groups ``[B, S, K]``."""
        anchor_idx = self.fps_op(xyz, self.samples, skip_near_origin=self.fps_skip_near_origin)
        return anchor_idx, knn_points(gather_points(xyz, anchor_idx), xyz, self.k)

    def _table(self, xyz: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        # With xyz, gather [feats, xyz] rows from one [B, N, C + 3] table: the concat is done once on the
        # N-point input instead of on the K-times larger grouped tensor.
        return torch.cat([feats, xyz], dim=-1) if self.use_xyz else feats

    def forward(
        self, xyz: torch.Tensor, feats: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        anchor_idx, neighbours = self.sample(xyz)
        table = self._table(xyz, feats)
        grouped = gather_points(table, neighbours)  # [B, S, K, C (+3)]
        anchor_rows = gather_points(table, anchor_idx)  # [B, S, C (+3)]: the "anchor" reference
        anchor_feats = anchor_rows[..., : feats.shape[-1]]
        if self.normalize is not None:
            if self.normalize == "center":
                ref = grouped.mean(dim=2, keepdim=True)
            else:
                ref = anchor_rows.unsqueeze(2)
            # Not grouped.sub_(ref): grouped is a view of the gather's output, and an in-place op on a view
            # makes autograd copy the whole gradient in backward (CopySlices), measured slower.
            diff = grouped - ref
            std = diff.reshape(diff.shape[0], -1).std(dim=-1).reshape(-1, 1, 1, 1)
            # diff (saved by std) and diff / std (saved by the product) must stay intact; + beta saves none.
            grouped = (self.affine_alpha * (diff / (std + 1e-5))).add_(self.affine_beta)
        return anchor_idx, neighbours, grouped, anchor_feats

    def linear_of_groups(
        self, xyz: torch.Tensor, feats: torch.Tensor, linear: nn.Linear
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``linear`` of the official grouper's output (normalised neighbours, each with its anchor's
        features) ``[B, S, K, out]`` for ``normalize="anchor"``, without building the groups.

        The normalisation is affine in the neighbour with one scale per cloud, so ``linear``'s neighbour
        columns (times alpha) run on the N points before the gather, ``[B, N, out]`` instead of K times as
        many rows, and everything per anchor folds into one shift per group; the scale, the std of the
        neighbour-anchor differences, comes from their first and second moments. The same function (to
        rounding); anchors and groups are returned as by :meth:`forward`.
        """
        anchor_idx, neighbours = self.sample(xyz)
        table = self._table(xyz, feats)
        a = table.shape[-1]
        anchors = gather_points(table, anchor_idx)
        scale = 1.0 / (_anchor_difference_std(table, anchors, neighbours) + 1e-5)
        w_neighbour, w_anchor = linear.weight[:, :a], linear.weight[:, a:]
        mapped = F.linear(table, w_neighbour * self.affine_alpha.view(1, a)) * scale.view(-1, 1, 1)
        shift = F.linear(anchors[..., : feats.shape[-1]], w_anchor, linear.bias)
        shift = shift + F.linear(self.affine_beta.view(1, a), w_neighbour) - gather_points(mapped, anchor_idx)
        return anchor_idx, neighbours, gather_points_shifted(mapped, neighbours, shift)


def _anchor_difference_std(table: torch.Tensor, anchors: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Per cloud, the unbiased std over ``(S, K, C)`` of ``gather_points(table, groups)`` minus the
    anchors (as the official grouper's ``torch.std``), from sums over the groups: no ``[B, S, K, C]``
    tensor. Computed in at least float32, also under autocast (in bf16 the moments' cancellation costs a
    percent), and returned in the table's dtype."""
    s, k = groups.shape[1:]
    count = s * k * table.shape[-1]
    with torch.autocast(table.device.type, enabled=False):
        dtype = torch.promote_types(table.dtype, torch.float32)
        # the differences do not change with a shift of the table; centred, the moments' cancellation is
        # that of the features' spread, not of their mean
        center = anchors.detach().to(dtype).mean(1, keepdim=True)
        points, anchor_rows = table.to(dtype) - center, anchors.to(dtype) - center
        sums = gather_points_sum(points, groups)  # [B, S, C]
        square_sums = gather_points_sum(points.square().sum(-1, keepdim=True), groups)  # [B, S, 1]
        total = sums.sum((1, 2)) - k * anchor_rows.sum((1, 2))
        total_sq = (
            square_sums.sum((1, 2))
            + k * anchor_rows.square().sum((1, 2))
            - 2 * (anchor_rows * sums).sum((1, 2))
        )
        var = (total_sq - total.square() / count) / (count - 1)
        return var.clamp_min(0).sqrt().to(table.dtype)


class PreBlock(nn.Module):
    """Optional context-cluster block followed by a residual MLP, applied to every group."""

    def __init__(
        self,
        dim: int,
        expansion: float,
        bias: bool,
        activation: str,
        cluster: bool,
        heads: int,
        aggregation: Aggregation = "similarity",
    ) -> None:
        super().__init__()
        self.cluster = GroupClusterMixer(dim, heads=heads, aggregation=aggregation) if cluster else None
        self.mlp = ResidualMLP(dim, expansion, bias, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cluster is None:
            return self.mlp(x)
        return cluster_residual_unit(x, self.cluster, self.mlp.net1, self.mlp.net2, self.mlp.act)


class Stage(nn.Module):
    """Group -> transfer -> pre-extraction blocks -> max over neighbours -> pos-extraction blocks.

    Returns the grouper's anchors ``[B, S]`` and groups ``[B, S, K]``, and the anchors' features.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        samples: int,
        k: int,
        pre_blocks: int,
        pos_blocks: int,
        expansion: float,
        bias: bool,
        activation: str,
        use_xyz: bool,
        normalize: str | None,
        cluster: bool,
        cluster_heads: int,
        fps_skip_near_origin: bool = False,
        aggregation: Aggregation = "similarity",
    ) -> None:
        super().__init__()
        self.grouper = LocalGrouper(in_dim, samples, k, use_xyz, normalize, fps_skip_near_origin)
        self.transfer = LinearBN(2 * in_dim + (3 if use_xyz else 0), out_dim, bias, activation)
        self.pre = nn.Sequential(
            *[
                PreBlock(out_dim, expansion, bias, activation, cluster, cluster_heads, aggregation)
                for _ in range(pre_blocks)
            ]
        )
        self.pos = nn.Sequential(
            *[ResidualMLP(out_dim, expansion, bias, activation) for _ in range(pos_blocks)]
        )

    def forward(
        self, xyz: torch.Tensor, feats: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.grouper.normalize == "anchor" and grad_needed(feats, self.transfer.fc.weight):
            # training: the transfer's products on the N points (LocalGrouper.linear_of_groups); evaluation
            # runs the official graph, whose products are the MACs counted
            anchor_idx, neighbours, mapped = self.grouper.linear_of_groups(xyz, feats, self.transfer.fc)
            grouped = self.transfer.norm_act(mapped, self.transfer.act)
        else:
            anchor_idx, neighbours, grouped, anchors = self.grouper(xyz, feats)
            grouped = self.transfer.forward_concat(grouped, anchors)
        grouped = self.pre(grouped)
        # max with indices, as the official adaptive_max_pool1d: its backward scatters into the chosen rows
        # (amax's splits ties through a mask: several full-size passes and tensors)
        return anchor_idx, neighbours, self.pos(max_values(grouped, 2))


class PointMLP(PointClassifier):
    """PointMLP (Ma et al., ICLR 2022), optionally with a context-cluster block before each
    pre-extraction residual unit (PointMLP-CoC, Ma et al., ICLR 2023).

    Input: xyz ``[B, N, 3]`` (``input_layout="BCN"`` takes the official ``[B, 3, N]``), ``N >= num_points``
    is not required but at least the first stage's anchors and neighbours must exist.
    Stage ``i`` samples ``num_points // prod(reducers[:i+1])`` anchors, as the official model does.
    ``fps_skip_near_origin=True`` samples them as the CUDA kernel the official models trained and were
    evaluated with (pointnet2_ops: points with |p|^2 <= 1e-3 are never anchors; its tie-break);
    the default is the official pure-torch fallback. Official-checkpoint evaluation turns it on.
    """

    family = "pointmlp"

    def __init__(
        self,
        num_classes: int = 40,
        num_points: int = 1024,
        embed_dim: int = 64,
        res_expansion: float = 1.0,
        activation: str = "relu",
        bias: bool = False,
        use_xyz: bool = False,
        normalize: str | None = "anchor",
        dim_expansion: Sequence[int] = (2, 2, 2, 2),
        pre_blocks: Sequence[int] = (2, 2, 2, 2),
        pos_blocks: Sequence[int] = (2, 2, 2, 2),
        k_neighbors: Sequence[int] = (24, 24, 24, 24),
        reducers: Sequence[int] = (2, 2, 2, 2),
        cluster: bool = False,
        cluster_heads: int = 1,
        aggregation: Aggregation = "similarity",
        drop_rate: float = 0.5,
        input_layout: str = "BNC",
        fps_skip_near_origin: bool = False,
    ) -> None:
        config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__(config, num_classes, num_points, input_layout)
        check_per_stage(
            dim_expansion=dim_expansion,
            pre_blocks=pre_blocks,
            pos_blocks=pos_blocks,
            k_neighbors=k_neighbors,
            reducers=reducers,
        )
        self.embedding = LinearBN(3, embed_dim, bias, activation)
        stages, dim, available, self.stage_samples = [], embed_dim, num_points, []
        for i, (expand, n_pre, n_pos, k, reduce) in enumerate(
            zip(dim_expansion, pre_blocks, pos_blocks, k_neighbors, reducers)
        ):
            samples = available // reduce
            if samples < 1 or k > available:
                raise ValueError(
                    f"stage {i} would sample {samples} anchors with k={k} neighbours out of {available} "
                    "points; raise num_points or lower reducers/k_neighbors"
                )
            stages.append(
                Stage(
                    dim,
                    dim * expand,
                    samples,
                    k,
                    n_pre,
                    n_pos,
                    res_expansion,
                    bias,
                    activation,
                    use_xyz,
                    normalize,
                    cluster,
                    cluster_heads,
                    fps_skip_near_origin,
                    aggregation,
                )
            )
            self.stage_samples.append(samples)
            dim, available = dim * expand, samples
        self.min_input_points = max(self.stage_samples[0], k_neighbors[0])
        self.stages = nn.ModuleList(stages)
        self.num_features = dim
        self.classifier = classifier_head((dim, 512, 256), num_classes, activation, drop_rate)

    def _validated_xyz(self, x: torch.Tensor) -> torch.Tensor:
        xyz = self.checked_xyz(x)
        if xyz.shape[1] < self.min_input_points:
            raise ValueError(
                f"xyz has {xyz.shape[1]} points but the model samples {self.stage_samples[0]} anchors and "
                f"{self.stages[0].grouper.k} neighbours in its first stage; pass at least "
                f"{self.min_input_points} points or build the model with a smaller num_points"
            )
        return xyz.contiguous()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Global feature ``[B, num_features]`` (max over the last stage's points)."""
        xyz = self._validated_xyz(x)
        feats = self.embedding(xyz)
        point_idx = None  # capturing: which input points the stage's points are (None: all of them)
        for s, stage in enumerate(self.stages):
            anchor_idx, neighbours, feats = stage(xyz, feats)
            if self._captured is not None:
                self._captured[s] = _group_stage(stage, xyz, point_idx, anchor_idx, neighbours)
                point_idx = anchor_idx if point_idx is None else point_idx.gather(1, anchor_idx)
            xyz = gather_points(xyz, anchor_idx)
        return feats.max(dim=1).values

    def cluster_mixers(self) -> list[ClusterMixer]:
        return [block.cluster for stage in self.stages for block in stage.pre if block.cluster is not None]


def _group_stage(
    stage: Stage,
    xyz: torch.Tensor,
    point_idx: torch.Tensor | None,
    anchor_idx: torch.Tensor,
    neighbours: torch.Tensor,
) -> StageClusters:
    """What a stage grouped and its cluster blocks assigned, read from the mixers' recorded results.

    Each kNN group has one center (its mean), so the group is the center: a member's similarity to its
    group's center decides, over the groups that hold it, which center the point is shown as joining.
    """
    b, groups, k = neighbours.shape
    blocks = []
    for block in stage.pre:
        if block.cluster is not None:
            # heads folded into the batch as (b, group, head): [B * S * heads, K] -> [B, heads, S, K]
            similarity = take_result(block.cluster).similarity.reshape(b, groups, -1, k).transpose(1, 2)
            blocks.append(BlockClusters(*group_owner(neighbours, similarity, xyz.shape[1])))
    return StageClusters(
        groups, blocks, points=xyz.detach(), point_idx=point_idx, anchor_idx=anchor_idx, groups=neighbours,
        within_groups=True,
    )  # fmt: skip


_ELITE = dict(
    embed_dim=32,
    res_expansion=0.25,
    dim_expansion=(2, 2, 2, 1),
    pre_blocks=(1, 1, 2, 1),
    pos_blocks=(1, 1, 2, 1),
    k_neighbors=(24, 24, 24, 24),
    reducers=(2, 2, 2, 2),
)


@register_model
def pointmlp(num_classes: int = 40, **kwargs) -> PointMLP:
    """PointMLP: 13.24 M parameters with 40 classes."""
    return PointMLP(num_classes=num_classes, **kwargs)


@register_model
def pointmlp_elite(num_classes: int = 40, **kwargs) -> PointMLP:
    """PointMLP-Elite: 0.72 M parameters with 40 classes."""
    return PointMLP(num_classes=num_classes, **{**_ELITE, **kwargs})


@register_model
def pointmlp_coc(num_classes: int = 40, **kwargs) -> PointMLP:
    """PointMLP-CoC, the paper's point model: 15.33 M parameters with 40 classes."""
    return PointMLP(num_classes=num_classes, **{"cluster": True, **kwargs})


@register_model
def pointmlp_coc_elite(num_classes: int = 40, **kwargs) -> PointMLP:
    """PointMLP-Elite with context clusters: for small compute budgets (not in the paper)."""
    return PointMLP(num_classes=num_classes, **{**_ELITE, "cluster": True, **kwargs})


# Official key -> our key. Official modules: embedding.net.{0 conv,1 bn}; local_grouper_list.i;
# pre_blocks_list.i.{transfer.net, operation.j}; pos_blocks_list.i.operation.j; classifier (same).
_UNIT = {
    "net.0": "fc",
    "net.1": "bn",
    "net1.0": "net1.fc",
    "net1.1": "net1.bn",
    "net2.0": "net2.fc",
    "net2.1": "net2.bn",
}
_CLUSTER = {"fc1": "f", "fc_v": "v", "fc2": "proj", "sim_alpha": "sim_alpha", "sim_beta": "sim_beta"}


def convert_official_state_dict(
    state_dict: dict[str, torch.Tensor], cluster: bool
) -> dict[str, torch.Tensor]:
    """Map an official PointMLP / PointMLP-CoC state dict (pointMLP-pytorch, Context-Cluster) to ours.

    In PointMLP-CoC, ``operation`` alternates cluster block and residual unit; in PointMLP it holds
    only residual units. Keys that match no rule are passed through (and reported by a strict load).
    """
    out = {}
    per_block = 2 if cluster else 1
    for key, value in state_dict.items():
        new = _convert_key(key, per_block)
        if value.dim() == 3 and value.shape[-1] == 1 and new.endswith("fc.weight"):
            value = value.squeeze(-1)  # Conv1d(k=1) weight -> Linear weight
        out[new] = value
    return out


def _unit(rest: str) -> str:
    for old, new in sorted(_UNIT.items(), key=lambda kv: -len(kv[0])):
        if rest.startswith(old + "."):
            return new + rest[len(old) :]
    return rest


def _convert_key(key: str, per_block: int) -> str:
    if key.startswith("embedding."):
        return "embedding." + _unit(key[len("embedding.") :])
    m = re.fullmatch(r"local_grouper_list\.(\d+)\.(affine_alpha|affine_beta)", key)
    if m:
        return f"stages.{m[1]}.grouper.{m[2]}"
    m = re.fullmatch(r"pre_blocks_list\.(\d+)\.transfer\.(.+)", key)
    if m:
        return f"stages.{m[1]}.transfer.{_unit(m[2])}"
    m = re.fullmatch(r"pre_blocks_list\.(\d+)\.operation\.(\d+)\.(.+)", key)
    if m:
        block, part = divmod(int(m[2]), per_block)
        if per_block == 2 and part == 0:
            name, _, rest = m[3].partition(".")
            return f"stages.{m[1]}.pre.{block}.cluster.{_CLUSTER.get(name, name)}{'.' + rest if rest else ''}"
        return f"stages.{m[1]}.pre.{block}.mlp.{_unit(m[3])}"
    m = re.fullmatch(r"pos_blocks_list\.(\d+)\.operation\.(\d+)\.(.+)", key)
    if m:
        return f"stages.{m[1]}.pos.{m[2]}.{_unit(m[3])}"
    return key
