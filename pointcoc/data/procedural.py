"""An embedded point-cloud dataset: procedural 3D shapes generated in memory, no download.

Every shape is stretched to the same random per-axis extents before rotation, so bounding-box size says
little about the class (tests check that a classifier on sorted extents stays far from perfect); telling a
stretched sphere from a stretched box, or a table from a snowman, needs the surface geometry.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._io import SplitError
from .mesh import normalize_unit_sphere, sample_surface
from .point_dataset import PointCloudDataset
from .point_transforms import PointTransform

Mesh = tuple[np.ndarray, np.ndarray]
SPLITS = {"train": 0, "val": 1, "test": 2}
DEFAULT_PER_CLASS = {"train": 160, "val": 40, "test": 80}


def _grid_surface(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], nu: int, nv: int, wrap_v: bool) -> Mesh:
    """Triangulate a parametric surface ``fn(u, v) -> [.., 3]`` over ``u, v`` in [0, 1]."""
    u, v = np.meshgrid(np.linspace(0, 1, nu), np.linspace(0, 1, nv, endpoint=not wrap_v), indexing="ij")
    verts = fn(u, v).reshape(-1, 3)
    cols = nv if wrap_v else nv - 1
    i, j = np.meshgrid(np.arange(nu - 1), np.arange(cols), indexing="ij")
    a, b = i * nv + j, i * nv + (j + 1) % nv
    c, d = a + nv, b + nv
    faces = np.concatenate([np.stack([a, b, c], -1), np.stack([b, d, c], -1)]).reshape(-1, 3)
    return verts, faces


def _merge(*meshes: Mesh) -> Mesh:
    verts, faces, offset = [], [], 0
    for v, f in meshes:
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(verts), np.concatenate(faces)


def _move(mesh: Mesh, scale: tuple[float, float, float], shift: tuple[float, float, float]) -> Mesh:
    return mesh[0] * np.asarray(scale) + np.asarray(shift), mesh[1]


def sphere() -> Mesh:
    def fn(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        theta, phi = u * np.pi, v * 2 * np.pi
        return np.stack([np.sin(theta) * np.cos(phi), np.cos(theta), np.sin(theta) * np.sin(phi)], -1)

    return _grid_surface(fn, 13, 24, wrap_v=True)


def box() -> Mesh:
    verts = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])  # fmt: skip
    return verts, faces


def _lathe(profile: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], nu: int = 12) -> Mesh:
    """Surface of revolution about y from a (radius, height) profile over t in [0, 1]."""

    def fn(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        r, y = profile(u)
        phi = v * 2 * np.pi
        return np.stack([r * np.cos(phi), y, r * np.sin(phi)], -1)

    return _grid_surface(fn, nu, 24, wrap_v=True)


def cylinder() -> Mesh:
    # closed profile: bottom cap centre -> rim -> up the side -> rim -> top cap centre
    ts = np.array([0, 1 / 3, 2 / 3, 1])
    return _lathe(lambda t: (np.interp(t, ts, [0, 1, 1, 0]), np.interp(t, ts, [-1, -1, 1, 1])), nu=16)


def cone() -> Mesh:
    ts = np.array([0, 0.5, 1])
    return _lathe(lambda t: (np.interp(t, ts, [0, 1, 0]), np.interp(t, ts, [-1, -1, 1])), nu=16)


def torus(rng: np.random.Generator) -> Mesh:
    minor = rng.uniform(0.2, 0.45)

    def fn(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        a, b = u * 2 * np.pi, v * 2 * np.pi
        r = 1 + minor * np.cos(a)
        return np.stack([r * np.cos(b), minor * np.sin(a), r * np.sin(b)], -1)

    return _grid_surface(fn, 13, 24, wrap_v=True)


def pyramid() -> Mesh:
    verts = np.array([[-1, -1, -1], [1, -1, -1], [1, -1, 1], [-1, -1, 1], [0, 1, 0]], dtype=np.float64)
    return verts, np.array([[0, 1, 2], [0, 2, 3], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])


def table(rng: np.random.Generator) -> Mesh:
    top, leg = rng.uniform(0.08, 0.2), rng.uniform(0.06, 0.15)
    legs = [_move(box(), (leg, 1 - top, leg), (sx * (1 - leg), -top, sz * (1 - leg)))
            for sx in (-1, 1) for sz in (-1, 1)]  # fmt: skip
    return _merge(_move(box(), (1, top, 1), (0, 1 - top, 0)), *legs)


def dumbbell(rng: np.random.Generator) -> Mesh:
    r, bar = rng.uniform(0.25, 0.45), rng.uniform(0.08, 0.15)
    bar_mesh = _move(cylinder(), (bar, 1 - r, bar), (0, 0, 0))
    return _merge(
        bar_mesh, _move(sphere(), (r, r, r), (0, 1 - r, 0)), _move(sphere(), (r, r, r), (0, r - 1, 0))
    )


def snowman(rng: np.random.Generator) -> Mesh:
    small = rng.uniform(0.3, 0.45)
    big = 1 - small  # the two balls touch and together span y in [-1, 1]
    return _merge(_move(sphere(), (big, big, big), (0, big - 1, 0)),
                  _move(sphere(), (small, small, small), (0, 1 - small, 0)))  # fmt: skip


def jack(rng: np.random.Generator) -> Mesh:
    t = rng.uniform(0.12, 0.3)
    return _merge(_move(box(), (1, t, t), (0, 0, 0)), _move(box(), (t, 1, t), (0, 0, 0)),
                  _move(box(), (t, t, 1), (0, 0, 0)))  # fmt: skip


def _cap_profile(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # flat underside from the axis to the rim (first third), then a quarter circle up to the top
    angle = np.clip(t - 1 / 3, 0, None) * 0.75 * np.pi
    r = np.where(t < 1 / 3, 3 * t, np.cos(angle))
    return r, np.where(t < 1 / 3, 0.0, np.sin(angle))


def mushroom(rng: np.random.Generator) -> Mesh:
    stem = rng.uniform(0.15, 0.35)
    return _merge(_move(cylinder(), (stem, 0.5, stem), (0, -0.5, 0)), _lathe(_cap_profile, nu=16))


SHAPES: dict[str, Callable[[np.random.Generator], Mesh]] = {
    "sphere": lambda rng: sphere(),
    "box": lambda rng: box(),
    "cylinder": lambda rng: cylinder(),
    "cone": lambda rng: cone(),
    "pyramid": lambda rng: pyramid(),
    "torus": torus,
    "table": table,
    "dumbbell": dumbbell,
    "snowman": snowman,
    "jack": jack,
    "mushroom": mushroom,
}
CLASSES = tuple(SHAPES)


def random_rotation(rng: np.random.Generator, tilt: float) -> np.ndarray:
    """Any angle about the up axis (y) composed with tilts up to ``tilt`` radians about x and z."""
    a, bx, bz = rng.uniform(0, 2 * np.pi), rng.uniform(-tilt, tilt), rng.uniform(-tilt, tilt)
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(bx), -np.sin(bx)], [0, np.sin(bx), np.cos(bx)]])
    rz = np.array([[np.cos(bz), -np.sin(bz), 0], [np.sin(bz), np.cos(bz), 0], [0, 0, 1]])
    return rz @ rx @ ry


def make_shape(
    label: int,
    num_points: int,
    rng: np.random.Generator,
    noise: float = 0.01,
    occlusion: float = 0.5,
    tilt: float = 0.25,
) -> np.ndarray:
    """One sample of class ``label``: ``[num_points, 3]`` float32 on the unit sphere."""
    verts, faces = SHAPES[CLASSES[label]](rng)
    # stretch every class to the same random box: its proportions then carry no class information
    lo, hi = verts.min(0), verts.max(0)
    verts = (verts - (lo + hi) / 2) / ((hi - lo) / 2) * rng.uniform(0.5, 1.0, size=3)
    points = sample_surface(verts, faces, 2 * num_points, rng).astype(np.float64)
    points = points @ random_rotation(rng, tilt).T + rng.normal(0, noise, points.shape)
    if rng.random() < occlusion:
        # a random half-space cut, as if part of the object were hidden from a scanner
        direction = rng.normal(size=3)
        depth = points @ (direction / np.linalg.norm(direction))
        points = points[depth < np.quantile(depth, 1 - rng.uniform(0.1, 0.35))]
    points = points[rng.permutation(len(points))[:num_points]]
    return normalize_unit_sphere(points)


def generate(
    split: str = "train",
    per_class: int | None = None,
    num_points: int = 1024,
    seed: int = 0,
    classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Points ``[S, num_points, 3]`` and labels ``[S]``; identical for identical arguments.

    Shape ``i`` of a split draws from its own stream seeded by ``(seed, split, i)``, so splits never share a
    sample and a split does not change when another split's size does.
    """
    if split not in SPLITS:
        raise SplitError(f"procedural split must be one of {sorted(SPLITS)}, got {split!r}")
    per_class = per_class or DEFAULT_PER_CLASS[split]
    num_classes = classes or len(CLASSES)
    if not 2 <= num_classes <= len(CLASSES):
        raise ValueError(f"classes must be in [2, {len(CLASSES)}], got {num_classes}")
    labels = np.repeat(np.arange(num_classes), per_class)
    points = np.stack([
        make_shape(int(y), num_points, np.random.default_rng([seed, SPLITS[split], i]))
        for i, y in enumerate(labels)
    ])  # fmt: skip
    return points, labels


class ProceduralShapes(PointCloudDataset):
    """The embedded default point set (11 classes unless ``classes`` takes the first few)."""

    def __init__(
        self,
        split: str = "train",
        num_points: int = 1024,
        transform: PointTransform | None = None,
        per_class: int | None = None,
        seed: int = 0,
        classes: int | None = None,
    ) -> None:
        points, labels = generate(split, per_class, num_points, seed, classes)
        super().__init__(points, labels, CLASSES[: classes or len(CLASSES)], num_points, transform)
