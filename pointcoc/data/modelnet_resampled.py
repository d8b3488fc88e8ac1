"""ModelNet40 ``modelnet40_normal_resampled`` (PointNet++ layout), parsed once into a cached array file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._io import check_points, read_lines, require_dir, require_file
from .cache import cached_arrays, file_signature
from .point_dataset import PointCloudDataset
from .point_transforms import PointTransform

RESAMPLED_HINT = (
    "expected <root>/modelnet40_shape_names.txt, modelnet40_{train,test}.txt and <class>/<class>_NNNN.txt "
    "(download modelnet40_normal_resampled.zip, see datasets/README.md)"
)


class ModelNet40Resampled(PointCloudDataset):
    """Comma-separated ``x,y,z,nx,ny,nz`` files; keeps the first ``stored_points`` rows of each.

    Parsing 12k text files takes minutes, so the parsed split is cached as one ``.npz`` under
    ``cache_dir`` (default ``~/.cache/pointcoc``), never inside ``root``. ``use_normals`` serves
    ``[N, 6]`` instead of xyz only.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        num_points: int = 1024,
        transform: PointTransform | None = None,
        use_normals: bool = False,
        stored_points: int | None = None,
        cache_dir: str | Path | None = None,
        prefix: str = "modelnet40",
    ) -> None:
        root = require_dir(root, "modelnet40_normal_resampled", RESAMPLED_HINT)
        classes = read_lines(require_file(root / f"{prefix}_shape_names.txt", "class list", RESAMPLED_HINT))
        names = read_lines(
            require_file(root / f"{prefix}_{split}.txt", f"'{split}' split list", RESAMPLED_HINT)
        )
        class_of = {c: i for i, c in enumerate(classes)}
        files, labels = [], []
        for name in names:
            cls = name.rsplit("_", 1)[0]  # "night_stand_0001" -> "night_stand"
            if cls not in class_of:
                raise ValueError(
                    f"{root / f'{prefix}_{split}.txt'} lists {name!r} whose class {cls!r} is not in "
                    f"{prefix}_shape_names.txt; fix the lists"
                )
            files.append(require_file(root / cls / f"{name}.txt", "shape", RESAMPLED_HINT))
            labels.append(class_of[cls])
        stored_points = stored_points or num_points

        def build() -> dict[str, np.ndarray]:
            return {"points": np.stack([read_resampled(f, stored_points) for f in files])}

        key = f"resampled\n{stored_points}\n{file_signature(files)}"
        points = cached_arrays(f"{prefix}-resampled-{split}", key, build, cache_dir)["points"]
        check_points(points, root, num_points, RESAMPLED_HINT)
        self.files = files
        super().__init__(points, np.asarray(labels), classes, num_points, transform, use_normals=use_normals)


def read_resampled(path: Path, rows: int) -> np.ndarray:
    """The first ``rows`` lines of one shape file as float32 ``[rows, 6]``."""
    try:
        data = np.loadtxt(path, delimiter=",", dtype=np.float32, max_rows=rows, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{path} is not comma-separated numbers ({exc}); re-download it") from None
    if data.shape[1] != 6:
        raise ValueError(f"{path} has {data.shape[1]} columns, expected 6 (x,y,z,nx,ny,nz); re-download it")
    if data.shape[0] < rows:
        raise ValueError(f"{path} has {data.shape[0]} points but {rows} were requested; ask for fewer points")
    check_points(data[None], path, None, RESAMPLED_HINT)
    return data
