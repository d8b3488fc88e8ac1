"""Forming point sets and centers on an image grid: region partition and grid center proposals.

A feature map ``[B, C, H, W]`` is a set of ``H * W`` points. Region partition folds it into
``fh * fw`` independent sets (clustering is then local to each region); grid proposals pool each
set to ``ph x pw`` centers. Point order within a set is row-major over (H, W), as in the official code.
"""

from __future__ import annotations

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


def points_to_grid(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[B, H * W, C]`` -> ``[B, C, H, W]``."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *size)
