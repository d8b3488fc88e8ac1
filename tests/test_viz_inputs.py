"""Input files for ``visualize``: the .ply reader and the point-file errors, each one line naming the fix."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from test_viz_helpers import sphere_ply

from pointcoc.data import read_ply
from pointcoc.viz.inputs import input_kind, read_points, split_index

HEADER = "ply\nformat {fmt} 1.0\nelement vertex {n}\nproperty float x\nproperty float y\nproperty float z\n"


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_ascii_ply_with_extra_properties_and_polygons(tmp_path):
    text = (
        "ply\nformat ascii 1.0\ncomment made by hand\nelement vertex 5\nproperty float x\nproperty float y\n"
        "property float z\nproperty uchar red\nelement face 2\nproperty list uchar int vertex_indices\n"
        "end_header\n0 0 0 9\n1 0 0 9\n1 1 0 9\n0 1 0 9\n0 0 1 9\n3 0 1 4\n4 0 1 2 3\n"
    )
    path = tmp_path / "t.ply"
    path.write_text(text)
    vertices, faces = read_ply(path)
    assert vertices.shape == (5, 3) and vertices[2].tolist() == [1, 1, 0]
    assert faces.tolist() == [[0, 1, 4], [0, 1, 2], [0, 2, 3]]  # the quad fan-triangulated


@pytest.mark.parametrize("order", ["<", ">"])
def test_binary_ply_both_byte_orders_with_triangles(tmp_path, order):
    xyz = np.arange(12, dtype=np.float32).reshape(4, 3)
    fmt = "binary_little_endian" if order == "<" else "binary_big_endian"
    header = (
        HEADER.format(fmt=fmt, n=4) + "element face 2\nproperty list uchar int vertex_indices\nend_header\n"
    )
    faces = b"".join(
        np.uint8(3).tobytes() + np.asarray(f, order + "i4").tobytes() for f in ([0, 1, 2], [1, 2, 3])
    )
    path = tmp_path / "mesh.ply"
    path.write_bytes(header.encode() + xyz.astype(order + "f4").tobytes() + faces)
    vertices, triangles = read_ply(path)
    assert np.array_equal(vertices, xyz) and triangles.tolist() == [[0, 1, 2], [1, 2, 3]]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("hello", "no 'ply' header ending in 'end_header'"),
        (HEADER.format(fmt="ascii", n=3) + "end_header\n0 0 0\n1 1\n", "cannot reshape"),
        (HEADER.format(fmt="ascii", n=1).replace("property float z\n", "") + "end_header\n0 0\n", "no 'z'"),
        (HEADER.format(fmt="text", n=1) + "end_header\n0 0 0\n", "unknown format 'text'"),
        (
            HEADER.format(fmt="ascii", n=1) + "element face 1\nproperty list uchar int vertex_indices\n"
            "end_header\n0 0 0\n3 0 1 2\n",
            "face indices outside its 1 vertices",
        ),
    ],
)
def test_broken_ply_files_are_refused_in_one_line(tmp_path, text, reason):
    path = tmp_path / "t.ply"
    path.write_text(text)
    with pytest.raises(ValueError) as exc:
        read_ply(path)
    assert str(path) in one_line(exc) and reason in str(exc.value)


def test_point_files_are_read_normalised_and_meshes_sampled(tmp_path):
    points = read_points(sphere_ply(tmp_path / "s.ply", n=500), 300)
    assert points.shape == (300, 3) and points.dtype == torch.float32
    assert torch.allclose(points.norm(dim=1).max(), torch.tensor(1.0))  # unit sphere
    mesh = tmp_path / "tetra.ply"
    faces = "element face 4\nproperty list uchar int vertex_indices\nend_header\n"
    mesh.write_text(
        HEADER.format(fmt="ascii", n=4)
        + faces
        + "0 0 0\n4 0 0\n0 4 0\n0 0 4\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n"
    )
    sampled = read_points(mesh, 1000)  # 4 vertices, but 1000 points on the surface
    assert sampled.shape == (1000, 3) and torch.equal(sampled, read_points(mesh, 1000))  # fixed seed
    txt = tmp_path / "cloud.txt"
    np.savetxt(txt, np.random.default_rng(0).normal(size=(50, 6)), delimiter=",")
    assert read_points(txt, 40).shape == (40, 3)


def test_h5_samples_are_chosen_by_index(tmp_path):
    path = tmp_path / "shapes.h5"
    data = np.random.default_rng(0).normal(size=(3, 64, 3)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["data"] = data
    assert split_index(f"{path}:2") == (path, 2)
    first = read_points(path, 64, index=2)
    centred = data[2] - data[2].mean(0)
    assert torch.allclose(first, torch.from_numpy(centred / np.linalg.norm(centred, axis=1).max()), atol=1e-6)
    with pytest.raises(ValueError) as exc:
        read_points(path, 64)
    assert "holds 3 shapes; choose one as shapes.h5:INDEX (0-2)" in one_line(exc)
    with pytest.raises(ValueError) as exc:
        read_points(path, 64, index=3)
    assert "index 3 is out of range (0-2)" in one_line(exc)
    with pytest.raises(ValueError, match="names sample 1 but --index says 2"):
        split_index(f"{path}:1", 2)


def test_bad_point_inputs_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(ValueError) as exc:
        read_points(sphere_ply(tmp_path / "few.ply", n=100), 300)
    assert "few.ply holds 100 points but the model takes 300; give a denser cloud" in one_line(exc)
    bad = tmp_path / "words.txt"
    bad.write_text("x y z\nnot numbers\n")
    with pytest.raises(ValueError) as exc:
        read_points(bad, 10)
    assert "words.txt is not rows of numbers" in one_line(exc)
    with pytest.raises(ValueError) as exc:
        input_kind(tmp_path / "cloud.xyz")
    assert "unsupported file type '.xyz'; give an image" in one_line(exc)
    with pytest.raises(ValueError, match="missing.off does not exist"):
        read_points(tmp_path / "missing.off", 10)
