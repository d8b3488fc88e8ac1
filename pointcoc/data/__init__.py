"""Datasets, transforms and loaders for point clouds and images.

Point sets yield ``(xyz float32 [N, 3], label int64)`` and are held in memory; images yield
``(uint8 [C, H, W], label int64)`` and are augmented batched (:mod:`pointcoc.data.image_augment`, kornia).
"""

from .factory import build_dataset, build_loader, dataset_names
from .images import MNIST, Digits, ImageFolder, load_rgb, read_idx
from .mesh import ModelNetOff, read_off, sample_surface
from .modelnet_h5 import SCANOBJECTNN_CLASSES, SCANOBJECTNN_VARIANTS, ModelNetH5, ScanObjectNN
from .modelnet_resampled import ModelNet40Resampled
from .ply import read_ply
from .point_dataset import PointCloudDataset
from .point_transforms import eval_transform, train_transform
from .procedural import ProceduralShapes

__all__ = [
    "MNIST",
    "SCANOBJECTNN_CLASSES",
    "SCANOBJECTNN_VARIANTS",
    "Digits",
    "ImageFolder",
    "ModelNet40Resampled",
    "ModelNetH5",
    "ModelNetOff",
    "PointCloudDataset",
    "ProceduralShapes",
    "ScanObjectNN",
    "build_dataset",
    "build_loader",
    "dataset_names",
    "eval_transform",
    "load_rgb",
    "read_idx",
    "read_off",
    "read_ply",
    "sample_surface",
    "train_transform",
]
