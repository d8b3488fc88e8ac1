"""Point sets in the official ``modelnet40_ply_hdf5_2048`` layout and ScanObjectNN's ``h5_files``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._io import SplitError, check_labels, check_points, read_h5, read_lines, require_dir, require_file
from .point_dataset import PointCloudDataset
from .point_transforms import PointTransform


def modelnet_hint(dataset: str | None) -> str:
    """How to prepare the folder: the script of the named set (``modelnet40``/``modelnet10``), else both."""
    if dataset in ("modelnet40", "modelnet10"):
        return f"prepare it with `python -m datasets.{dataset} --root DIR`"
    return "prepare it with `python -m datasets.modelnet40 --root DIR` (or datasets.modelnet10)"


SCANOBJECTNN_HINT = "see `python -m datasets.scanobjectnn` for how to obtain h5_files"

# ScanObjectNN's label order (its training scripts' object list).
SCANOBJECTNN_CLASSES = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door",
    "shelf", "table", "bed", "pillow", "sink", "sofa", "toilet",
)  # fmt: skip

# ModelNet40's label order (shape_names.txt of modelnet40_ply_hdf5_2048: the class names sorted).
MODELNET40_CLASSES = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard", "lamp",
    "laptop", "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink",
    "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase", "wardrobe", "xbox",
)  # fmt: skip

# variant -> (folder under h5_files, file suffix); PB_* also exist without background in main_split_nobg.
SCANOBJECTNN_VARIANTS = {
    "OBJ_ONLY": ("main_split_nobg", ""),
    "OBJ_BG": ("main_split", ""),
    "PB_T25": ("main_split", "_augmented25_norot"),
    "PB_T25_R": ("main_split", "_augmented25rot"),
    "PB_T50_R": ("main_split", "_augmentedrot"),
    "PB_T50_RS": ("main_split", "_augmentedrot_scale75"),
}


class ModelNetH5(PointCloudDataset):
    """ModelNet40/10 (or any set) in the PointNet hdf5 layout.

    ``root`` holds ``{split}_files.txt`` listing ``*.h5`` files (``data [S, P, 3]``, ``label [S, 1]``) and
    ``shape_names.txt``. ``dataset`` (``modelnet40``/``modelnet10``) names the preparation script that error
    messages suggest. List entries are resolved by file name inside ``root``, since the official lists
    carry the original ``data/modelnet40_ply_hdf5_2048/`` prefix.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        num_points: int = 1024,
        transform: PointTransform | None = None,
        dataset: str | None = None,
    ) -> None:
        self.hint = modelnet_hint(dataset)
        root = require_dir(root, "ModelNet hdf5", self.hint)
        classes = read_lines(require_file(root / "shape_names.txt", "class list", self.hint))
        files = self.split_files(root, split)
        points, labels = [], []
        for path in files:
            arrays = read_h5(path, ("data", "label"), self.hint)
            points.append(check_points(arrays["data"], path, num_points, self.hint))
            labels.append(check_labels(arrays["label"], len(classes), path, "check shape_names.txt"))
            if len(labels[-1]) != len(points[-1]):
                raise ValueError(
                    f"{path} has {len(points[-1])} shapes but {len(labels[-1])} labels; re-create it"
                )
        self.files = files
        super().__init__(np.concatenate(points), np.concatenate(labels), classes, num_points, transform)

    def split_files(self, root: Path, split: str) -> list[Path]:
        listing = require_file(root / f"{split}_files.txt", f"'{split}' split list", self.hint)
        names = [Path(line).name for line in read_lines(listing)]
        if not names:
            raise ValueError(f"{listing} lists no h5 files; {self.hint}")
        return [require_file(root / name, f"h5 listed in {listing.name}", self.hint) for name in names]


class ScanObjectNN(PointCloudDataset):
    """ScanObjectNN ``h5_files`` (2048 points, 15 classes); ``root`` is the ``h5_files`` folder.

    ``background=False`` reads a PB_* variant from ``main_split_nobg``; OBJ_ONLY/OBJ_BG fix it themselves.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        variant: str = "PB_T50_RS",
        num_points: int = 1024,
        transform: PointTransform | None = None,
        background: bool = True,
    ) -> None:
        path = self.file_for(root, split, variant, background)
        arrays = read_h5(path, ("data", "label"), SCANOBJECTNN_HINT)
        points = check_points(arrays["data"], path, num_points, SCANOBJECTNN_HINT)
        labels = check_labels(arrays["label"], len(SCANOBJECTNN_CLASSES), path, SCANOBJECTNN_HINT)
        self.file = path
        super().__init__(points, labels, SCANOBJECTNN_CLASSES, num_points, transform)

    @staticmethod
    def file_for(root: str | Path, split: str, variant: str, background: bool = True) -> Path:
        if variant not in SCANOBJECTNN_VARIANTS:
            raise ValueError(
                f"unknown ScanObjectNN variant {variant!r}; choose from {sorted(SCANOBJECTNN_VARIANTS)}"
            )
        if split not in ("train", "test"):
            raise SplitError(f"ScanObjectNN has splits 'train' and 'test', got {split!r}")
        folder, suffix = SCANOBJECTNN_VARIANTS[variant]
        if variant.startswith("PB") and not background:
            folder = "main_split_nobg"
        root = require_dir(root, "ScanObjectNN h5_files", SCANOBJECTNN_HINT)
        prefix = "training" if split == "train" else "test"
        return require_file(
            root / folder / f"{prefix}_objectdataset{suffix}.h5", f"ScanObjectNN {variant}", SCANOBJECTNN_HINT
        )
