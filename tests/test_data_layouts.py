"""Tiny files in each official point-cloud layout, loaded back.

The writers here are shared by the other test_data_* modules.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_modelnet_h5(
    root: Path, shapes: int = 12, points: int = 64, classes: int = 4, files: int = 2
) -> Path:
    """``modelnet40_ply_hdf5_2048`` layout with the official list prefixes; returns ``root``."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    (root / "shape_names.txt").write_text("\n".join(f"class{i}" for i in range(classes)) + "\n")
    for split in ("train", "test"):
        names = []
        for k in range(files):
            name = f"ply_data_{split}{k}.h5"
            with h5py.File(root / name, "w") as f:
                f["data"] = rng.normal(size=(shapes, points, 3)).astype(np.float32)
                f["label"] = (np.arange(shapes) % classes).astype(np.uint8)[:, None]
            names.append(f"data/modelnet40_ply_hdf5_2048/{name}")
        (root / f"{split}_files.txt").write_text("\n".join(names) + "\n")
    return root


def write_scanobjectnn(root: Path, shapes: int = 15, points: int = 2048) -> Path:
    """Every ScanObjectNN variant file in both folders; returns the ``h5_files`` root."""
    rng = np.random.default_rng(1)
    for folder in ("main_split", "main_split_nobg"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for suffix in ("", "_augmented25_norot", "_augmented25rot", "_augmentedrot", "_augmentedrot_scale75"):
            for prefix in ("training", "test"):
                with h5py.File(root / folder / f"{prefix}_objectdataset{suffix}.h5", "w") as f:
                    f["data"] = rng.normal(size=(shapes, points, 3)).astype(np.float32)
                    f["label"] = np.arange(shapes) % 15
                    f["mask"] = np.zeros((shapes, points), dtype=np.int64)
    return root


def write_resampled(root: Path, classes: tuple[str, ...] = ("airplane", "night_stand"), per_class: int = 2,
                    rows: int = 50) -> Path:  # fmt: skip
    rng = np.random.default_rng(2)
    root.mkdir(parents=True, exist_ok=True)
    (root / "modelnet40_shape_names.txt").write_text("\n".join(classes) + "\n")
    names = []
    for c in classes:
        (root / c).mkdir(exist_ok=True)
        for i in range(1, per_class + 1):
            name = f"{c}_{i:04d}"
            np.savetxt(root / c / f"{name}.txt", rng.normal(size=(rows, 6)), delimiter=",", fmt="%.6f")
            names.append(name)
    (root / "modelnet40_train.txt").write_text("\n".join(names) + "\n")
    (root / "modelnet40_test.txt").write_text("\n".join(names[:1]) + "\n")
    return root


CUBE_OFF = """OFF
8 6 0
0 0 0
1 0 0
1 1 0
0 1 0
0 0 1
1 0 1
1 1 1
0 1 1
4 0 3 2 1
4 4 5 6 7
4 0 1 5 4
4 2 3 7 6
4 1 2 6 5
4 0 4 7 3
"""

TETRA_OFF = "OFF4 4 0\n0 0 0\n2 0 0\n0 2 0\n0 0 2\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n"


def write_off_tree(root: Path) -> Path:
    """ModelNet ``<class>/<split>/*.off`` with a quad-faced cube and a tetrahedron with a merged header."""
    for cls, text in (("cube", CUBE_OFF), ("tetra", TETRA_OFF)):
        for split in ("train", "test"):
            folder = root / cls / split
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{cls}_0001.off").write_text(text)
    return root


def write_idx(path: Path, array: np.ndarray, compress: bool) -> Path:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def test_modelnet_h5_layout(tmp_path: Path) -> None:
    from pointcoc.data import ModelNetH5

    root = write_modelnet_h5(tmp_path / "mn")
    ds = ModelNetH5(root, "train", num_points=32)
    assert len(ds) == 24 and ds.classes == ["class0", "class1", "class2", "class3"]
    x, y = ds[5]
    assert x.shape == (32, 3) and x.dtype == torch.float32 and y.dtype == torch.int64 and int(y) == 5 % 4
    assert torch.equal(x, torch.from_numpy(ds.points[5, :32]))  # test-time: the first N points
    assert len(ModelNetH5(root, "test", num_points=64)) == 24


@pytest.mark.parametrize("variant", ["OBJ_ONLY", "OBJ_BG", "PB_T25", "PB_T25_R", "PB_T50_R", "PB_T50_RS"])
def test_scanobjectnn_variants(tmp_path_factory: pytest.TempPathFactory, variant: str) -> None:
    from pointcoc.data import ScanObjectNN

    root = tmp_path_factory.getbasetemp() / "sonn"
    if not root.exists():
        write_scanobjectnn(root)
    ds = ScanObjectNN(root, "train", variant, num_points=1024)
    assert len(ds) == 15 and ds.num_classes == 15 and ds[3][0].shape == (1024, 3)
    assert ds.file.parent.name == ("main_split_nobg" if variant == "OBJ_ONLY" else "main_split")
    if variant == "PB_T50_RS":
        assert ds.file.name == "training_objectdataset_augmentedrot_scale75.h5"
        nobg = ScanObjectNN(root, "test", variant, background=False)
        assert nobg.file.parent.name == "main_split_nobg" and nobg.file.name.startswith("test_")


def test_resampled_layout_caches_outside_root(tmp_path: Path) -> None:
    from pointcoc.data import ModelNet40Resampled

    root = write_resampled(tmp_path / "data")
    before = sorted(p for p in root.rglob("*"))
    ds = ModelNet40Resampled(root, "train", num_points=40, cache_dir=tmp_path / "cache")
    assert len(ds) == 4 and ds.classes == ["airplane", "night_stand"] and list(ds.labels) == [0, 0, 1, 1]
    assert sorted(p for p in root.rglob("*")) == before  # nothing written into the data folder
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    first = np.loadtxt(root / "airplane" / "airplane_0001.txt", delimiter=",")[:40, :3]
    np.testing.assert_allclose(ds[0][0].numpy(), first, atol=1e-6)
    again = ModelNet40Resampled(root, "train", num_points=40, cache_dir=tmp_path / "cache", use_normals=True)
    assert again[0][0].shape == (40, 6)


def test_off_meshes_sampled_on_surface(tmp_path: Path) -> None:
    from pointcoc.data import ModelNetOff, read_off

    root = write_off_tree(tmp_path / "off")
    verts, faces = read_off(root / "cube" / "train" / "cube_0001.off")
    assert verts.shape == (8, 3) and faces.shape == (12, 3)  # quads fan-triangulated
    assert read_off(root / "tetra" / "train" / "tetra_0001.off")[1].shape == (4, 3)  # "OFF4 4 0" header
    ds = ModelNetOff(root, "train", num_points=256, cache_dir=tmp_path / "cache")
    assert ds.classes == ["cube", "tetra"] and len(ds) == 2
    cube = ds.points[0]
    # every sample lies on a face: one of its coordinates sits at that axis' minimum or maximum
    on_face = np.isclose(cube, cube.min(0), atol=1e-5) | np.isclose(cube, cube.max(0), atol=1e-5)
    assert on_face.any(axis=1).all()
    again = ModelNetOff(root, "train", num_points=256, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.points, ds.points)


def test_area_weighted_sampling() -> None:
    from pointcoc.data import sample_surface

    # two triangles: the right one has 3x the area of the left one
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0], [5, 0, 0], [2, 1, 0]], dtype=float)
    pts = sample_surface(verts, np.array([[0, 1, 2], [3, 4, 5]]), 20000, np.random.default_rng(0))
    assert abs((pts[:, 0] > 1.5).mean() - 0.75) < 0.02


def test_point_transforms() -> None:
    from pointcoc.data.point_transforms import (
        AnisotropicScaleTranslate,
        NormalizeUnitSphere,
        RotateUp,
        eval_transform,
        train_transform,
    )  # fmt: skip

    pts = torch.randn(2048, 3)
    out = train_transform(1024)(pts)
    assert out.shape == (1024, 3)
    assert torch.equal(eval_transform(1024)(pts), pts[:1024])
    # scale in [2/3, 3/2] and shift in [-0.2, 0.2] per axis: recover them from an affine fit
    base = pts[:16]
    moved = AnisotropicScaleTranslate()(base)
    scale = (moved[1:] - moved[:1]) / (base[1:] - base[:1])
    assert torch.allclose(scale, scale[0].expand_as(scale), atol=1e-3)
    assert ((scale[0] >= 2 / 3 - 1e-4) & (scale[0] <= 1.5 + 1e-4)).all()
    shift = moved[0] - base[0] * scale[0]
    assert (shift.abs() <= 0.2 + 1e-4).all()
    rotated = RotateUp(axis=1)(pts)
    assert torch.allclose(rotated[:, 1], pts[:, 1]) and torch.allclose(
        rotated.norm(dim=1), pts.norm(dim=1), atol=1e-5
    )
    unit = NormalizeUnitSphere()(pts * 50 + 7)
    assert torch.allclose(unit.mean(0), torch.zeros(3), atol=1e-5) and abs(unit.norm(dim=1).max() - 1) < 1e-5
    assert train_transform(3000, resample=True, jitter=0.01, rotate_axis=2)(pts).shape == (3000, 3)


@pytest.mark.slow
def test_real_modelnet10() -> None:
    root = SHARED_DATA / "modelnet10_hdf5_1024"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    from pointcoc.data import build_dataset, build_loader

    ds = build_dataset("modelnet10", root, "train", num_points=1024)
    assert len(ds) == 3991 and ds.num_classes == 10 and ds.classes[0] == "bathtub"
    assert ds.points.shape == (3991, 1024, 3) and ds.points.dtype == np.float32
    x, y = next(iter(build_loader(ds, batch_size=8, train=True, seed=0)))
    assert x.shape == (8, 1024, 3) and y.dtype == torch.int64


def test_real_samples(tmp_path: Path) -> None:
    off_root = SHARED_DATA / "samples" / "off" / "ModelNet10"
    airplanes = SHARED_DATA / "samples" / "modelnet40_normal_resampled" / "airplane"
    if not (off_root.is_dir() and airplanes.is_dir()):
        pytest.skip("shared data samples are absent")
    from pointcoc.data import ModelNet40Resampled, ModelNetOff

    ds = ModelNetOff(off_root, "test", num_points=512, cache_dir=tmp_path / "cache")
    assert ds.classes == ["sofa", "table"] and ds.points.shape == (2, 512, 3)
    assert abs(np.linalg.norm(ds.points, axis=2).max() - 1) < 1e-5
    # the real files, linked into the official list layout (the shared folder has no list files)
    root = tmp_path / "resampled"
    (root / "airplane").mkdir(parents=True)
    names = sorted(p.stem for p in airplanes.glob("*.txt"))
    for n in names:
        (root / "airplane" / f"{n}.txt").symlink_to(airplanes / f"{n}.txt")
    (root / "modelnet40_shape_names.txt").write_text("airplane\n")
    (root / "modelnet40_train.txt").write_text("\n".join(names))
    real = ModelNet40Resampled(root, "train", num_points=1024, cache_dir=tmp_path / "cache", use_normals=True)
    assert len(real) == 4 and real[0][0].shape == (1024, 6)
    assert np.allclose(np.linalg.norm(real.points[:, :, 3:], axis=2), 1, atol=1e-3)  # unit normals
