"""Context Cluster image models (Ma et al., "Image as Set of Points", ICLR 2023): coc_tiny ... coc_base_dim96.

An image is a set of points with five features: its three colour channels and its position, ``i / (n - 1)
- 0.5`` along dim 2 and dim 3. The model appends the positions itself, so it takes ordinary ``[B, 3, H, W]``
images. A 4x4/stride-4 convolution reduces the points, four stages of context-cluster blocks follow with
strided 3x3 convolutions between them, and a pooled linear head classifies.

Module names equal the official ones (``patch_embed.proj``, ``network.{i}.{j}.token_mixer.f`` ...), so an
official state dict loads as it is. The token mixer is :class:`pointcoc.layers.RegionClusterMixer`; the
clustering itself lives only in :func:`pointcoc.cluster.context_cluster`.

Cluster assignments for visualisation come from the forward pass itself, see
:meth:`ContextCluster.capture_clusters` (:mod:`.capture`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from ..cluster import Aggregation, unfold_regions
from ..layers import ChannelsLastGroupNorm, ClusterMixer, DropPath, Mlp, RegionClusterMixer, check_per_stage
from ..utils.constants import IMAGENET_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD
from .capture import BlockClusters, CapturesClusters, StageClusters, take_result
from .model_cfg import ModelCfg
from .registry import register_model


class PointReducer(nn.Module):
    """Strided convolution merging neighbouring points (official ``PointRecuder`` minus its no-op norm)."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_dim, out_dim, kernel_size=kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class ClusterBlock(nn.Module):
    """``x + ls1 * drop_path(mixer(GN(x)))`` then ``x + ls2 * drop_path(mlp(GN(x)))``.

    Takes and returns ``[B, C, H, W]`` maps but computes on their channels-last view ``[B, H, W, C]``: norms,
    mixer, MLP and residuals then need no transposes when the map is channels-last in memory, as
    :class:`ContextCluster` keeps it.
    """

    def __init__(
        self,
        dim: int,
        mlp_ratio: float,
        act_layer: Callable[[], nn.Module],
        drop: float,
        drop_path: float,
        use_layer_scale: bool,
        layer_scale_init_value: float,
        proposal_w: int,
        proposal_h: int,
        fold_w: int,
        fold_h: int,
        heads: int,
        head_dim: int,
        aggregation: Aggregation = "similarity",
    ) -> None:
        super().__init__()
        self.norm1 = ChannelsLastGroupNorm(1, dim)
        self.token_mixer = RegionClusterMixer(
            dim,
            dim,
            proposal_w=proposal_w,
            proposal_h=proposal_h,
            fold_w=fold_w,
            fold_h=fold_h,
            heads=heads,
            head_dim=head_dim,
            aggregation=aggregation,
        )
        self.norm2 = ChannelsLastGroupNorm(1, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer, drop)
        self.drop_path = DropPath(drop_path)
        if use_layer_scale:
            self.layer_scale_1 = nn.Parameter(torch.full((dim,), layer_scale_init_value))
            self.layer_scale_2 = nn.Parameter(torch.full((dim,), layer_scale_init_value))
        else:
            self.layer_scale_1 = self.layer_scale_2 = None

    def _residual(self, x: torch.Tensor, scale: torch.Tensor | None, branch: torch.Tensor) -> torch.Tensor:
        if scale is None:
            return x + self.drop_path(branch)
        if self.drop_path.p == 0.0 or not self.training:
            return torch.addcmul(x, scale, branch)  # x + scale * branch in one pass
        return x + self.drop_path(scale * branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        # The mixer is called as a module (its hooks record assignments) on the [B, C, H, W] view: no copy.
        mixed = self.token_mixer(self.norm1(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = self._residual(x, self.layer_scale_1, mixed)
        x = self._residual(x, self.layer_scale_2, self.mlp(self.norm2(x)))
        return x.permute(0, 3, 1, 2)


class ContextCluster(CapturesClusters, nn.Module):
    """Context Cluster image classifier / backbone.

    Arguments and defaults are the official ``ContextCluster``'s (``norm_layer`` is always
    ``GroupNorm(1, C)``, which every official variant uses). ``*_w`` settings refer to dim 2 of the map and
    ``*_h`` to dim 3. Feature maps whose sides are not multiples of a stage's folds are zero-padded
    inside the mixer (see :class:`pointcoc.layers.RegionClusterMixer`); the official code rejects them.
    ``aggregation`` is the cluster normaliser the weights were trained with (``"similarity"``: today's
    official code; ``"count"``: the March-2023 releases and openmixup).

    ``fork_feat=True`` builds a dense-prediction backbone: ``forward`` returns every stage's output,
    each through its own GroupNorm (``norm0``, ``norm2``, ... named by network index as officially), and
    the model has no ``norm``/``head``.
    """

    def __init__(
        self,
        layers: Sequence[int],
        embed_dims: Sequence[int],
        mlp_ratios: Sequence[float],
        downsamples: Sequence[bool] | None = None,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        num_classes: int = 1000,
        in_patch_size: int = 4,
        in_stride: int = 4,
        in_pad: int = 0,
        down_patch_size: int = 2,
        down_stride: int = 2,
        down_pad: int = 0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        use_layer_scale: bool = True,
        layer_scale_init_value: float = 1e-5,
        fork_feat: bool = False,
        proposal_w: Sequence[int] = (2, 2, 2, 2),
        proposal_h: Sequence[int] = (2, 2, 2, 2),
        fold_w: Sequence[int] = (8, 4, 2, 1),
        fold_h: Sequence[int] = (8, 4, 2, 1),
        heads: Sequence[int] = (2, 4, 6, 8),
        head_dim: Sequence[int] = (16, 16, 32, 32),
        aggregation: Aggregation = "similarity",
    ) -> None:
        super().__init__()
        stages = len(layers)
        if stages < 1 or min(layers) < 1:
            raise ValueError(f"layers must list at least one block per stage, got {list(layers)}")
        downsamples = [True] * stages if downsamples is None else downsamples
        per_stage = dict(
            embed_dims=embed_dims,
            mlp_ratios=mlp_ratios,
            downsamples=downsamples,
            proposal_w=proposal_w,
            proposal_h=proposal_h,
            fold_w=fold_w,
            fold_h=fold_h,
            heads=heads,
            head_dim=head_dim,
        )
        check_per_stage(stages, **per_stage)
        cfg = {name: list(value) for name, value in per_stage.items()}
        self.num_classes = num_classes
        self.fork_feat = fork_feat
        self.model_cfg = ModelCfg(
            architecture="", family="context_cluster", input_kind="image", num_classes=num_classes,
            input_size=(3, 224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=IMAGENET_CROP_PCT,
            interpolation="bicubic", aggregation=aggregation,
        )  # fmt: skip
        self.num_features = embed_dims[-1]
        self.stem_geometry = (in_patch_size, in_stride, in_pad)
        self.patch_embed = PointReducer(5, embed_dims[0], in_patch_size, in_stride, in_pad)

        # Drop-path rate grows linearly with the block's position in the whole network.
        total = sum(layers)
        network: list[nn.Module] = []
        self.stage_indices: list[int] = []  # position of each stage in ``network``
        for i, depth in enumerate(layers):
            blocks = [
                ClusterBlock(
                    embed_dims[i],
                    cfg["mlp_ratios"][i],
                    act_layer,
                    drop_rate,
                    drop_path_rate * (sum(layers[:i]) + j) / max(total - 1, 1),
                    use_layer_scale,
                    layer_scale_init_value,
                    cfg["proposal_w"][i],
                    cfg["proposal_h"][i],
                    cfg["fold_w"][i],
                    cfg["fold_h"][i],
                    cfg["heads"][i],
                    cfg["head_dim"][i],
                    aggregation,
                )
                for j in range(depth)
            ]
            self.stage_indices.append(len(network))
            network.append(nn.Sequential(*blocks))
            # As officially, a reducer also appears (still strided) when only the width changes.
            if i + 1 < stages and (cfg["downsamples"][i] or embed_dims[i] != embed_dims[i + 1]):
                network.append(
                    PointReducer(embed_dims[i], embed_dims[i + 1], down_patch_size, down_stride, down_pad)
                )
        self.network = nn.ModuleList(network)

        if fork_feat:
            for i, idx in enumerate(self.stage_indices):
                self.add_module(f"norm{idx}", nn.GroupNorm(1, embed_dims[i]))
        else:
            self.norm = nn.GroupNorm(1, embed_dims[-1])
            self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_linear)
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of keeping them (as in timm).

        Training then keeps only the blocks' inputs alive, trading about one extra forward pass of the
        blocks for a much smaller peak memory.
        """
        self.grad_checkpointing = enable

    def _with_positions(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
            got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be an image batch of shape [B, 3, H, W], got {got}")
        b, _, h, w = x.shape
        kernel, _, pad = self.stem_geometry
        if min(h, w) < 2 or min(h, w) + 2 * pad < kernel:
            raise ValueError(
                f"x must have H, W >= {max(2, kernel - 2 * pad)} for the stem, got shape {list(x.shape)}"
            )
        rows = torch.arange(h, device=x.device, dtype=x.dtype) / (h - 1.0) - 0.5
        cols = torch.arange(w, device=x.device, dtype=x.dtype) / (w - 1.0) - 0.5
        pos = torch.stack(torch.meshgrid(rows, cols, indexing="ij"))
        return torch.cat([x, pos.unsqueeze(0).expand(b, -1, -1, -1)], dim=1)

    def example_input(self, batch_size: int = 1, size: int = 224) -> torch.Tensor:
        """A random normalised-image batch ``[B, 3, size, size]`` (FLOP counting, benchmarks, tracing)."""
        return torch.randn(batch_size, 3, size, size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Last stage's map (``[B, C, H/32, W/32]`` for the official variants) before the head's norm;
        with ``fork_feat`` the list of every stage's normalised output."""
        # Channels-last from here on: the convolutions keep that layout and the blocks compute on it.
        x = self.patch_embed(self._with_positions(x).contiguous(memory_format=torch.channels_last))
        outs = []
        recompute = self.grad_checkpointing and torch.is_grad_enabled()
        for idx, module in enumerate(self.network):
            if recompute and idx in self.stage_indices:
                for block in module:
                    x = checkpoint(block, x, use_reentrant=False)
            else:
                x = module(x)
            if self._captured is not None and idx in self.stage_indices:
                self._captured[self.stage_indices.index(idx)] = _region_stage(module, x.shape[-2:])
            if self.fork_feat and idx in self.stage_indices:
                outs.append(getattr(self, f"norm{idx}")(x))
        return outs if self.fork_feat else x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` from :meth:`forward_features`' map."""
        return self.head(self.norm(x).mean((-2, -1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        features = self.forward_features(x)
        return features if self.fork_feat else self.forward_head(features)

    def cluster_mixers(self) -> list[ClusterMixer]:
        return [block.token_mixer for idx in self.stage_indices for block in self.network[idx]]


def _region_stage(blocks: nn.Sequential, size: torch.Size) -> StageClusters:
    """A stage's assignments on its ``H x W`` map, read from its mixers' recorded results."""
    mixer = blocks[0].token_mixer  # every block of a stage has the stage's folds and proposals
    rows, cols = mixer.proposals
    return StageClusters(
        rows * cols, [_region_block(block.token_mixer, size) for block in blocks], regions=mixer.folds
    )


def _region_block(mixer: RegionClusterMixer, size: torch.Size) -> BlockClusters:
    """The recorded ``[B * heads * regions, points]`` as ``[B, heads, H, W]`` on the map (padding cropped)."""
    h, w = size
    ph, pw = mixer.padded_size(h, w)
    fh, fw = mixer.folds
    result = take_result(mixer)

    def on_map(per_region: torch.Tensor) -> torch.Tensor:
        regions = per_region.reshape(-1, 1, ph // fh, pw // fw)
        return unfold_regions(regions, mixer.folds)[..., :h, :w].reshape(-1, mixer.heads, h, w)

    return BlockClusters(on_map(result.assignment), on_map(result.similarity))


def _init_linear(module: nn.Module) -> None:
    # As officially: truncated normal for linear layers only; convolutions keep PyTorch's default.
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


_COMMON = dict(mlp_ratios=(8, 8, 4, 4), downsamples=(True, True, True, True), down_patch_size=3, down_pad=1)
_TINY = dict(
    _COMMON, layers=(3, 4, 5, 2), embed_dims=(32, 64, 196, 320), heads=(4, 4, 8, 8), head_dim=(24,) * 4
)
_REGIONS = dict(proposal_w=(2,) * 4, proposal_h=(2,) * 4, fold_w=(8, 4, 2, 1), fold_h=(8, 4, 2, 1))
_WIDE = dict(_COMMON, **_REGIONS, embed_dims=(64, 128, 320, 512), head_dim=(32,) * 4)


def _build(config: dict, kwargs: dict) -> ContextCluster:
    return ContextCluster(**{**config, **kwargs})


@register_model
def coc_tiny(**kwargs) -> ContextCluster:
    """CoC-Tiny: 5.57 M parameters (the paper's "5.3M" is n / 1024**2), regions [8, 4, 2, 1]."""
    return _build({**_TINY, **_REGIONS}, kwargs)


@register_model
def coc_tiny2(**kwargs) -> ContextCluster:
    """CoC-Tiny with 7x7 regions in stages 0-1 and more centers; 224 inputs give maps divisible by 7."""
    return _build(
        dict(
            _TINY, proposal_w=(4, 2, 7, 4), proposal_h=(4, 2, 7, 4), fold_w=(7, 7, 1, 1), fold_h=(7, 7, 1, 1)
        ),
        kwargs,
    )


@register_model
def coc_tiny_plain(**kwargs) -> ContextCluster:
    """CoC-Tiny without region partition (global clustering, 16/16/4/4 centers)."""
    plain = dict(proposal_w=(4, 4, 2, 2), proposal_h=(4, 4, 2, 2), fold_w=(1,) * 4, fold_h=(1,) * 4)
    return _build({**_TINY, **plain}, kwargs)


@register_model
def coc_small(**kwargs) -> ContextCluster:
    """CoC-Small: 14.66 M parameters."""
    return _build(dict(_WIDE, layers=(2, 2, 6, 2), heads=(4, 4, 8, 8)), kwargs)


@register_model
def coc_medium(**kwargs) -> ContextCluster:
    """CoC-Medium: 29.29 M parameters."""
    return _build(dict(_WIDE, layers=(4, 4, 12, 4), heads=(6, 6, 12, 12)), kwargs)


@register_model
def coc_base_dim64(**kwargs) -> ContextCluster:
    """CoC-Base, width 64: 54.23 M parameters."""
    return _build(dict(_WIDE, layers=(6, 6, 24, 6), heads=(8, 8, 16, 16)), kwargs)


@register_model
def coc_base_dim96(**kwargs) -> ContextCluster:
    """CoC-Base, width 96: 53.05 M parameters."""
    return _build(
        dict(_WIDE, layers=(4, 4, 12, 4), embed_dims=(96, 192, 384, 768), heads=(8, 8, 16, 16)), kwargs
    )
