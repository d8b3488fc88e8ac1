"""Per-shape point-cloud transforms on ``[P, 3]`` float tensors.

Randomness comes from torch's generator so that DataLoader workers, which torch seeds one by one, draw
different augmentations without extra worker-init code.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Callable

import torch

PointTransform = Callable[[torch.Tensor], torch.Tensor]


class Compose:
    def __init__(self, transforms: Sequence[PointTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            points = t(points)
        return points

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


class FirstPoints:
    """Keep the first ``n`` points, as PointMLP does with the 2048 stored ones (stored in random order)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        if points.shape[0] < self.n:
            raise ValueError(f"shape has {points.shape[0]} points, fewer than the {self.n} requested")
        return points[: self.n]

    def __repr__(self) -> str:
        return f"FirstPoints({self.n})"


class RandomResample:
    """Draw ``n`` points at random: without replacement when there are enough, otherwise with."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        p = points.shape[0]
        idx = torch.randperm(p)[: self.n] if p >= self.n else torch.randint(p, (self.n,))
        return points.index_select(0, idx)

    def __repr__(self) -> str:
        return f"RandomResample({self.n})"


class NormalizeUnitSphere:
    """Centre on the centroid and scale into the unit sphere: raw data arrives in any units."""

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        xyz = points[:, :3] - points[:, :3].mean(dim=0)
        radius = xyz.norm(dim=1).max().clamp_min(1e-12)
        return torch.cat([xyz / radius, points[:, 3:]], dim=1)

    def __repr__(self) -> str:
        return "NormalizeUnitSphere()"


class CanonicalPose:
    """Resolve the pose ambiguity of axis-aligned shapes (e.g. PCA-aligned ModelNet samples).

    Centres the shape, orders its axes by decreasing spread and flips each axis so that its third moment
    is positive. Shapes that differ only by an axis permutation or by axis signs then coincide (up to
    near-equal spreads or near-symmetric axes). Normals, if present, follow the same permutation and signs.
    """

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        xyz = points[:, :3] - points[:, :3].mean(dim=0)
        order = xyz.var(dim=0).argsort(descending=True)
        xyz = xyz.index_select(1, order)
        sign = torch.where((xyz**3).mean(dim=0) < 0, -1.0, 1.0).to(xyz.dtype)
        if points.shape[1] >= 6:
            normals = points[:, 3:6].index_select(1, order) * sign
            return torch.cat([xyz * sign, normals, points[:, 6:]], dim=1)
        return xyz * sign

    def __repr__(self) -> str:
        return "CanonicalPose()"


class AnisotropicScaleTranslate:
    """PointMLP's ``translate_pointcloud``: per-axis scale U(lo, hi) then per-axis shift U(-shift, shift)."""

    def __init__(self, scale: tuple[float, float] = (2.0 / 3.0, 1.5), shift: float = 0.2) -> None:
        self.scale = scale
        self.shift = shift

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        lo, hi = self.scale
        s = torch.empty(3).uniform_(lo, hi)
        t = torch.empty(3).uniform_(-self.shift, self.shift)
        return torch.cat([points[:, :3] * s + t, points[:, 3:]], dim=1)

    def __repr__(self) -> str:
        return f"AnisotropicScaleTranslate(scale={self.scale}, shift={self.shift})"


class Shuffle:
    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        # index_select, not points[perm]: advanced indexing costs milliseconds per shape on a busy
        # multi-threaded CPU, index_select microseconds
        return points.index_select(0, torch.randperm(points.shape[0]))

    def __repr__(self) -> str:
        return "Shuffle()"


class Jitter:
    """PointNet's clipped Gaussian jitter on xyz."""

    def __init__(self, sigma: float = 0.01, clip: float = 0.05) -> None:
        self.sigma = sigma
        self.clip = clip

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        noise = (torch.randn(points.shape[0], 3) * self.sigma).clamp_(-self.clip, self.clip)
        return torch.cat([points[:, :3] + noise, points[:, 3:]], dim=1)

    def __repr__(self) -> str:
        return f"Jitter(sigma={self.sigma}, clip={self.clip})"


class RotateUp:
    """Random rotation about the up axis (``axis=1``: y, PointNet's ModelNet convention), normals too."""

    def __init__(self, axis: int = 1) -> None:
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
        self.axis = axis

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        angle = float(torch.rand(())) * 2.0 * math.pi
        rot = rotation_about(self.axis, angle, dtype=points.dtype)
        rotated = 6 if points.shape[1] >= 6 else 3
        out = points.clone()
        out[:, :rotated] = (points[:, :rotated].reshape(-1, 3) @ rot.T).reshape(-1, rotated)
        return out

    def __repr__(self) -> str:
        return f"RotateUp(axis={self.axis})"


def rotation_about(axis: int, angle: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """3x3 right-handed rotation matrix by ``angle`` radians about coordinate ``axis``."""
    c, s = math.cos(angle), math.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    if axis == 1:  # keep right-handedness: about y the plane order is (z, x)
        i, j = j, i
    rot = torch.eye(3, dtype=dtype)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot


# PointcloudScale(0.85, 1.15) of the official ModelNet40 vote (classification_ModelNet40/voting.py).
OFFICIAL_VOTE_SCALE = (0.85, 1.15)


def official_vote_views(
    points: torch.Tensor,
    votes: int = 10,
    scale: tuple[float, float] = OFFICIAL_VOTE_SCALE,
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """The views of a clean test batch ``[B, N, C]`` that the official ModelNet40 vote averages.

    View 0 is the batch itself. In voting.py ``new_data = data`` aliases the batch and ``PointcloudScale``
    multiplies it in place, so every later view scales the previous one again: view ``v`` is the batch
    times the product of ``v`` draws of a per-shape, per-axis U(lo, hi) factor (float64 draws cast to
    float32, multiplied in turn, as there). Only xyz (the first three channels) is scaled. A fresh batch
    starts clean again, as each repeat of the official script reloads it.
    """
    if votes < 1:
        raise ValueError(f"votes must be >= 1, got {votes}")
    lo, hi = scale
    view = points.clone()
    yield view.clone()
    for _ in range(votes - 1):
        draw = torch.rand(points.shape[0], 1, 3, dtype=torch.float64, generator=generator) * (hi - lo) + lo
        view[..., :3] = view[..., :3] * draw.to(points.device, points.dtype)
        yield view.clone()


def train_transform(
    num_points: int,
    normalize: bool = False,
    resample: bool = False,
    jitter: float = 0.0,
    rotate_axis: int | None = None,
    scale: tuple[float, float] = (2.0 / 3.0, 1.5),
    shift: float = 0.2,
    canonical: bool = False,
) -> Compose:
    """PointMLP's training pipeline (first N points, scale+translate, shuffle) with the optional extras.

    ``canonical`` puts each shape in :class:`CanonicalPose` (computed on all its points) first.
    """
    steps: list[PointTransform] = [CanonicalPose()] if canonical else []
    steps.append(RandomResample(num_points) if resample else FirstPoints(num_points))
    if normalize:
        steps.append(NormalizeUnitSphere())
    if rotate_axis is not None:
        steps.append(RotateUp(rotate_axis))
    steps.append(AnisotropicScaleTranslate(scale, shift))
    if jitter > 0:
        steps.append(Jitter(jitter))
    steps.append(Shuffle())
    return Compose(steps)


def eval_transform(num_points: int, normalize: bool = False, canonical: bool = False) -> Compose:
    """Deterministic evaluation pipeline: the first N points, optionally in canonical pose and unit-sphere
    normalised."""
    steps: list[PointTransform] = [CanonicalPose()] if canonical else []
    steps.append(FirstPoints(num_points))
    if normalize:
        steps.append(NormalizeUnitSphere())
    return Compose(steps)
