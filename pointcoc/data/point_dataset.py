"""In-memory point-set dataset base: whole sets are loaded once, items are views plus a transform."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .point_transforms import PointTransform, eval_transform


class PointCloudDataset(Dataset):
    """``points`` float32 ``[S, P, C]`` (C >= 3; xyz first) and int64 ``labels [S]`` held in memory.

    Items are ``(points [num_points, 3 or C], label)``; ``transform`` defaults to the first ``num_points``.
    """

    def __init__(
        self,
        points: np.ndarray,
        labels: np.ndarray,
        classes: Sequence[str],
        num_points: int,
        transform: PointTransform | None = None,
        use_normals: bool = False,
    ) -> None:
        self.points = np.ascontiguousarray(points if use_normals else points[..., :3], dtype=np.float32)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = list(classes)
        self.num_points = num_points
        self.transform = transform if transform is not None else eval_transform(num_points)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        # copy: transforms may write in place and the stored array must stay pristine
        points = torch.from_numpy(self.points[index].copy())
        return self.transform(points), torch.tensor(self.labels[index])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} shapes, {self.num_classes} classes, "
            f"{self.points.shape[1]} stored points, serving {self.num_points})"
        )
