"""Forming point sets and centers on an image grid: region partition and grid center proposals.

A feature map ``[B, C, H, W]`` is a set of ``H * W`` points. Region partition folds it into
``fh * fw`` independent sets (clustering is then local to each region); grid proposals pool each
set to ``ph x pw`` centers. Point order within a set is row-major over (H, W), as in the official code.

The mixers work on channels-last maps ``[B, H, W, C]``: :func:`split_region_sets` cuts them into contiguous
point sets ``[B * heads * regions, N, E]`` in one copy, :func:`merge_region_sets` puts them back and
:func:`set_centers` pools the centers from the sets themselves. :func:`fold_regions` and
:func:`grid_centers` are the same partition and pooling on ``[B, C, H, W]`` maps.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def fold_regions(x: torch.Tensor, folds: tuple[int, int]) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B * fh * fw, C, H / fh, W / fw]``, regions ordered row-major."""
    fh, fw = folds
    b, c, h, w = x.shape
    if h % fh or w % fw:
        raise ValueError(
            f"feature map {h}x{w} cannot be split into {fh}x{fw} regions: "
            "each side must be divisible by its fold"
        )
    x = x.reshape(b, c, fh, h // fh, fw, w // fw).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b * fh * fw, c, h // fh, w // fw)


def padded_to_folds(size: tuple[int, int], folds: tuple[int, int]) -> tuple[int, int]:
    """``(H, W)`` rounded up to multiples of the folds ``(fh, fw)``: the size a map is split into regions at
    when its sides do not divide (see :class:`pointcoc.layers.RegionClusterMixer`)."""
    (h, w), (fh, fw) = size, folds
    return -(-h // fh) * fh, -(-w // fw) * fw


def unfold_regions(x: torch.Tensor, folds: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`fold_regions`."""
    fh, fw = folds
    bf, c, h, w = x.shape
    b = bf // (fh * fw)
    x = x.reshape(b, fh, fw, c, h, w).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, fh * h, fw * w)


def grid_centers(x: torch.Tensor, proposals: tuple[int, int]) -> torch.Tensor:
    """Centers ``[B, ph * pw, C]``: adaptive average pooling of ``[B, C, H, W]`` to ``ph x pw``.

    Windows overlap when the sizes do not divide (e.g. 7x7 -> 4x4), as with ``nn.AdaptiveAvgPool2d``.
    """
    return F.adaptive_avg_pool2d(x, proposals).flatten(2).transpose(1, 2)


def grid_to_points(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, H * W, C]``."""
    return x.flatten(2).transpose(1, 2)


def split_region_sets(x: torch.Tensor, heads: int, folds: tuple[int, int]) -> torch.Tensor:
    """Channels-last ``[B, H, W, heads * E]`` -> point sets ``[B * heads * fh * fw, N, E]``, one copy.

    The sets are ordered ``(b, head, region)`` with regions row-major and the ``N = (H / fh) * (W / fw)``
    points row-major within each region, as :func:`fold_regions` orders them after the official head split.
    """
    fh, fw = folds
    b, h, w, c = x.shape
    x = x.reshape(b, fh, h // fh, fw, w // fw, heads, c // heads).permute(0, 5, 1, 3, 2, 4, 6)
    return x.reshape(b * heads * fh * fw, (h // fh) * (w // fw), c // heads)


def merge_region_sets(
    x: torch.Tensor, heads: int, folds: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`split_region_sets`: ``[B * heads * fh * fw, N, E]`` -> ``[B, H, W, heads * E]``."""
    fh, fw = folds
    h, w = size
    e = x.shape[-1]
    x = x.reshape(-1, heads, fh, fw, h // fh, w // fw, e).permute(0, 2, 4, 3, 5, 1, 6)
    return x.reshape(-1, h, w, heads * e)


def set_centers(sets: torch.Tensor, region: tuple[int, int], proposals: tuple[int, int]) -> torch.Tensor:
    """Centers ``[..., ph * pw, E]`` of point sets ``[..., N, E]`` laid out row-major on a ``region`` grid.

    :func:`grid_centers` (adaptive average pooling) on the channels-last view of the sets: no copy of them.
    """
    *lead, _, e = sets.shape
    grid = sets.reshape(-1, *region, e).permute(0, 3, 1, 2)
    pooled = F.adaptive_avg_pool2d(grid, proposals)  # channels-last in, channels-last out
    return pooled.permute(0, 2, 3, 1).reshape(*lead, -1, e)


@functools.lru_cache(maxsize=64)
def set_pool_matrix(
    region: tuple[int, int], proposals: tuple[int, int], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """:func:`set_centers` as a matrix ``[ph * pw, N]``: ``set_centers(sets, region, proposals)`` equals
    ``set_pool_matrix(...) @ sets`` (adaptive average pooling is linear; its windows are read off the
    pooling of each point's indicator). Cached: the mixers ask for it every step."""
    h, w = region
    indicators = torch.eye(h * w, dtype=dtype, device=device).view(h * w, 1, h, w)
    return F.adaptive_avg_pool2d(indicators, proposals).view(h * w, -1).t().contiguous()
