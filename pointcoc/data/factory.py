"""``build_dataset`` by name and a DataLoader helper."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .images import MNIST, Digits, ImageFolder
from .mesh import ModelNetOff
from .modelnet_h5 import ModelNetH5, ScanObjectNN
from .modelnet_resampled import ModelNet40Resampled
from .point_transforms import eval_transform, train_transform
from .procedural import ProceduralShapes

POINT_DATASETS = {
    "modelnet40": ModelNetH5,
    "modelnet10": ModelNetH5,
    "modelnet_h5": ModelNetH5,
    "modelnet40_resampled": ModelNet40Resampled,
    "modelnet_off": ModelNetOff,
    "scanobjectnn": ScanObjectNN,
}
EMBEDDED = {"procedural": ProceduralShapes, "digits": Digits}
IMAGE_DATASETS = {"imagefolder", "mnist"}


def dataset_names() -> list[str]:
    return sorted([*POINT_DATASETS, *EMBEDDED, *IMAGE_DATASETS])


def is_image_dataset(name: str) -> bool:
    """Whether ``name`` yields images (which take a per-image training ``crop``) rather than point sets."""
    return name in IMAGE_DATASETS or name == "digits"


def build_dataset(
    name: str,
    root: str | Path | None = None,
    split: str = "train",
    num_points: int = 1024,
    augment: bool | None = None,
    normalize: bool = False,
    canonical: bool = False,
    **kwargs: Any,
) -> Dataset:
    """Build a dataset by name.

    Point sets get PointMLP's training transform when ``augment`` (default: ``split == "train"``) and the
    first ``num_points`` otherwise; ``normalize`` adds unit-sphere normalisation (for data in raw units) and
    ``canonical`` a canonical pose for axis-aligned data with ambiguous axis order/signs, in both cases.
    ``kwargs`` go to the dataset (e.g. ``variant`` for ScanObjectNN, ``cache_dir``, ``seed``) or, for point
    sets, to :func:`train_transform` when prefixed ``aug_`` (``aug_jitter=0.01``, ``aug_rotate_axis=1``).
    Image folders read ``root/split`` when it exists, else ``root``; image sets take ``crop`` (a
    :class:`~pointcoc.data.images.RandomResizedCrop`) to cut each training image in the loader workers.
    """
    if name not in dataset_names():
        raise ValueError(f"unknown dataset {name!r} (data.name); choose from {', '.join(dataset_names())}")
    augment = split == "train" if augment is None else augment
    if name in POINT_DATASETS or name == "procedural":
        aug = {k[4:]: kwargs.pop(k) for k in list(kwargs) if k.startswith("aug_")}
        transform = (train_transform(num_points, normalize=normalize, canonical=canonical, **aug) if augment
                     else eval_transform(num_points, normalize=normalize, canonical=canonical))  # fmt: skip
        if name == "procedural":
            return ProceduralShapes(split, num_points, transform, **kwargs)
        if root is None:
            raise ValueError(_no_root(name))
        if POINT_DATASETS[name] is ModelNetH5:
            kwargs.setdefault("dataset", name)
        return POINT_DATASETS[name](root, split=split, num_points=num_points, transform=transform, **kwargs)
    if name == "digits":
        return Digits(split, **kwargs)
    if root is None:
        raise ValueError(_no_root(name))
    if name == "mnist":
        return MNIST(root, split, **kwargs)
    folder = Path(root) / split  # imagefolder, the one name left
    return ImageFolder(folder if folder.is_dir() else root, train=augment, **kwargs)


def _no_root(name: str) -> str:
    return f"dataset {name!r} needs a root folder (data.root): give it with --set data.root=DIR"


def build_loader(
    dataset: Dataset,
    batch_size: int = 32,
    train: bool = False,
    num_workers: int = 0,
    pin_memory: bool | None = None,
    seed: int | None = None,
    persistent_workers: bool | None = None,
) -> DataLoader:
    """A DataLoader: ``train`` shuffles and drops the last partial batch (BatchNorm dislikes size 1).

    ``pin_memory`` defaults to whether CUDA is available; ``seed`` fixes the shuffle order and, through
    torch's per-worker seeding, the augmentations.
    """
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train and len(dataset) > batch_size,  # type: ignore[arg-type]
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=num_workers > 0 if persistent_workers is None else persistent_workers,
        generator=generator,
    )
