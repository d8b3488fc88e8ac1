"""Raw ModelNet ``.off`` meshes: parsing and area-weighted surface sampling."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._io import require_dir
from .cache import cached_arrays, file_signature
from .point_dataset import PointCloudDataset
from .point_transforms import PointTransform

OFF_HINT = "expected ModelNet's <root>/<class>/<split>/<name>.off layout"


def read_off(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``[V, 3]`` float64 and triangles ``[F, 3]`` int64 (polygons fan-triangulated).

    Accepts ModelNet's malformed headers where the counts follow ``OFF`` on the same line.
    """
    path = Path(path)
    try:
        tokens = path.read_text().split()
        if not tokens or not tokens[0].startswith("OFF"):
            raise ValueError("no OFF header")
        if tokens[0] != "OFF":  # "OFF490 518 0"
            tokens = ["OFF", tokens[0][3:], *tokens[1:]]
        nv, nf = int(tokens[1]), int(tokens[2])
        vertices = np.asarray(tokens[4 : 4 + 3 * nv], dtype=np.float64).reshape(nv, 3)
        rest = np.asarray(tokens[4 + 3 * nv :], dtype=np.int64)
        faces = _triangulate(rest, nf)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"{path} is not a valid OFF mesh ({exc}); re-download it or remove it") from None
    if nf == 0 or faces.size == 0 or faces.max() >= nv or faces.min() < 0:
        raise ValueError(f"{path} has no faces or face indices outside its {nv} vertices; re-download it")
    if not np.isfinite(vertices).all():
        raise ValueError(f"{path} has non-finite vertex coordinates; re-download it or remove it")
    return vertices, faces


def _triangulate(face_tokens: np.ndarray, num_faces: int) -> np.ndarray:
    if face_tokens.size >= 4 * num_faces and np.all(face_tokens[: 4 * num_faces : 4] == 3):
        return face_tokens[: 4 * num_faces].reshape(num_faces, 4)[:, 1:]
    polygons, pos = [], 0
    for _ in range(num_faces):
        k = int(face_tokens[pos])
        polygons.append(face_tokens[pos + 1 : pos + 1 + k])
        if len(polygons[-1]) != k:
            raise ValueError(f"face with {k} vertices is truncated")
        pos += 1 + k
    return fan_triangulate(polygons)


def fan_triangulate(polygons: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """Triangles ``[F, 3]`` int64 fanned from each polygon's first vertex; an ``[F, k]`` array of equal-sized
    polygons is done without a Python loop."""
    if isinstance(polygons, np.ndarray) and polygons.ndim == 2:
        if polygons.shape[1] < 3:
            raise ValueError(f"faces with {polygons.shape[1]} vertices are degenerate")
        fans = [polygons[:, [0, i, i + 1]] for i in range(1, polygons.shape[1] - 1)]
        return np.stack(fans, axis=1).reshape(-1, 3).astype(np.int64)
    triangles = []
    for poly in polygons:
        if len(poly) < 3:
            raise ValueError(f"a face with {len(poly)} vertices is degenerate")
        triangles.extend((poly[0], poly[i], poly[i + 1]) for i in range(1, len(poly) - 1))
    return np.asarray(triangles, dtype=np.int64).reshape(-1, 3)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform on the mesh surface: faces drawn by area, then uniform barycentric coordinates."""
    tri = vertices[faces]  # [F, 3, 3]
    areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    total = areas.sum()
    if not total > 0:
        raise ValueError("mesh has zero surface area")
    chosen = rng.choice(len(faces), size=n, p=areas / total)
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1  # reflect into the triangle instead of rejecting: keeps the count exact
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    a, b, c = tri[chosen, 0], tri[chosen, 1], tri[chosen, 2]
    return (a + u[:, None] * (b - a) + v[:, None] * (c - a)).astype(np.float32)


def normalize_unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre ``[..., P, 3]`` shapes on their centroid and scale each into the unit sphere."""
    centred = points - points.mean(axis=-2, keepdims=True)
    radius = np.linalg.norm(centred, axis=-1).max(axis=-1)[..., None, None]
    return (centred / np.maximum(radius, 1e-12)).astype(np.float32)


class ModelNetOff(PointCloudDataset):
    """Raw ModelNet meshes ``<root>/<class>/<split>/*.off`` sampled once to ``sample_points`` points.

    Each mesh is sampled with its own seed (``seed`` + index), normalised to the unit sphere like the
    official hdf5 files, and the result cached outside ``root`` (see :func:`cached_arrays`).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        num_points: int = 1024,
        transform: PointTransform | None = None,
        sample_points: int | None = None,
        seed: int = 0,
        cache_dir: str | Path | None = None,
    ) -> None:
        root = require_dir(root, "ModelNet .off", "download ModelNet10/40 from modelnet.cs.princeton.edu")
        sample_points = sample_points or num_points
        if num_points > sample_points:
            raise ValueError(
                f"num_points={num_points} exceeds sample_points={sample_points}; raise sample_points"
            )
        classes = sorted(p.name for p in root.iterdir() if (p / split).is_dir())
        files = [f for c in classes for f in sorted((root / c / split).glob("*.off"))]
        if not files:
            raise FileNotFoundError(f"no .off files under {root}/<class>/{split}/; {OFF_HINT}")
        labels = np.asarray([classes.index(f.parent.parent.name) for f in files], dtype=np.int64)

        def build() -> dict[str, np.ndarray]:
            return {"points": sample_meshes(files, sample_points, seed)}

        key = f"off\n{sample_points}\n{seed}\n{file_signature(files)}"
        points = cached_arrays("modelnet-off", key, build, cache_dir)["points"]
        self.files = files
        super().__init__(points, labels, classes, num_points, transform)


def sample_meshes(files: list[Path], n: int, seed: int) -> np.ndarray:
    out = np.empty((len(files), n, 3), dtype=np.float32)
    for i, f in enumerate(files):
        vertices, faces = read_off(f)
        try:
            out[i] = sample_surface(vertices, faces, n, np.random.default_rng([seed, i]))
        except ValueError as exc:
            raise ValueError(f"{f}: {exc}; remove it or repair the mesh") from None
    return normalize_unit_sphere(out)
