"""Reading one input to visualise: an image, or one point cloud from an .h5 / .txt / .off / .ply file."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ..data._io import check_points, read_h5
from ..data.images import IMAGE_EXTENSIONS, load_rgb
from ..data.mesh import read_off, sample_surface
from ..data.ply import read_ply
from ..data.point_transforms import eval_transform

POINT_EXTENSIONS = (".h5", ".hdf5", ".txt", ".off", ".ply")
KINDS_HINT = (
    f"give an image ({', '.join(IMAGE_EXTENSIONS)}) or a point cloud ({', '.join(POINT_EXTENSIONS)}; "
    "an .h5 sample as FILE.h5:INDEX)"
)
SAMPLING_SEED = 0  # meshes are sampled, and large vertex clouds subsampled, with a fixed seed


def split_index(spec: str | Path, index: int | None = None) -> tuple[Path, int | None]:
    """``"shapes.h5:12"`` -> ``(Path("shapes.h5"), 12)``; an explicit ``index`` is used when given."""
    text = str(spec)
    head, sep, tail = text.rpartition(":")
    if sep and tail.isdigit() and Path(head).suffix.lower() in (".h5", ".hdf5"):
        if index is not None and index != int(tail):
            raise ValueError(f"{text} names sample {tail} but --index says {index}; give one of them")
        return Path(head), int(tail)
    return Path(text), index


def input_kind(path: Path) -> str:
    """``"image"`` or ``"points"`` by file name; anything else is refused naming what is accepted."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in POINT_EXTENSIONS:
        return "points"
    raise ValueError(f"{path}: unsupported file type {suffix or '(none)'!r}; {KINDS_HINT}")


def read_image(path: Path):  # -> PIL.Image.Image
    if not path.is_file():
        raise ValueError(f"input {path} does not exist")
    return load_rgb(path)


def read_points(
    path: Path, num_points: int, index: int | None = None, canonical: bool = False
) -> torch.Tensor:
    """``[num_points, 3]`` float32: the first points of an .h5 sample or .txt file (as the datasets take
    them), or points sampled on a mesh; centred and scaled into the unit sphere (files come in any units),
    in canonical pose when the model was trained so."""
    if not path.is_file():
        raise ValueError(f"input {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        points = _h5_sample(path, index)
    elif index is not None:
        raise ValueError(f"--index {index} applies to .h5 files only, not {path.name}")
    elif suffix == ".txt":
        points = _text_points(path, num_points)
    elif suffix == ".off":
        points = _surface(path, *read_off(path), num_points)
    else:
        vertices, faces = read_ply(path)
        points = (
            _surface(path, vertices, faces, num_points) if len(faces) else _subsample(vertices, num_points)
        )
    if len(points) < num_points:
        raise ValueError(
            f"{path} holds {len(points)} points but the model takes {num_points}; give a denser cloud "
            "or a mesh (.off, or .ply with faces), which is sampled"
        )
    xyz = torch.from_numpy(np.ascontiguousarray(points[:, :3], dtype=np.float32))
    return eval_transform(num_points, normalize=True, canonical=canonical)(xyz)


def _h5_sample(path: Path, index: int | None) -> np.ndarray:
    hint = "expected a 'data' array [shapes, points, 3] as in the ModelNet hdf5 files"
    data = check_points(read_h5(path, ("data",), hint)["data"], path, None, hint)
    if index is None:
        raise ValueError(
            f"{path} holds {len(data)} shapes; choose one as {path.name}:INDEX (0-{len(data) - 1})"
        )
    if not 0 <= index < len(data):
        raise ValueError(
            f"{path} holds {len(data)} shapes; index {index} is out of range (0-{len(data) - 1})"
        )
    return data[index]


def _text_points(path: Path, rows: int) -> np.ndarray:
    try:
        with open(path) as f:
            first = f.readline()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # numpy's "input contained no data": told below
            data = np.loadtxt(path, delimiter="," if "," in first else None, max_rows=rows, ndmin=2)
    except ValueError as exc:  # also a file that is no text (UnicodeDecodeError)
        what = f"{path} is not rows of numbers x y z [...]"
        reason = " ".join(str(exc).split())[:120]
        raise ValueError(f"{what} ({reason}); fix or re-export it") from None
    if data.shape[1] < 3 or not np.isfinite(data[:, :3]).all():
        raise ValueError(f"{path} needs finite x, y, z in its first three columns, one point per row")
    return data


def _surface(path: Path, vertices: np.ndarray, faces: np.ndarray, n: int) -> np.ndarray:
    try:
        return sample_surface(vertices, faces, n, np.random.default_rng(SAMPLING_SEED))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}; repair the mesh") from None


def _subsample(vertices: np.ndarray, n: int) -> np.ndarray:
    # a random subset, not the first n: exported vertex lists are often ordered (scan lines, parts)
    if len(vertices) <= n:
        return vertices
    keep = np.random.default_rng(SAMPLING_SEED).choice(len(vertices), n, replace=False)
    return vertices[np.sort(keep)]
