"""Each bad input gives one clear line naming the file and what to do (never a bare h5py/PIL traceback)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from test_data_layouts import (
    write_idx,
    write_modelnet_h5,
    write_off_tree,
    write_resampled,
    write_scanobjectnn,
)

from pointcoc.data import (
    MNIST,
    ImageFolder,
    ModelNet40Resampled,
    ModelNetH5,
    ModelNetOff,
    ScanObjectNN,
    read_off,
)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as exc:
        ModelNetH5(tmp_path / "nowhere")
    assert "nowhere does not exist" in one_line(exc) and "python -m datasets.modelnet40" in one_line(exc)
    with pytest.raises(FileNotFoundError, match="h5_files folder .*nowhere does not exist"):
        ScanObjectNN(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="python -m datasets.mnist"):
        MNIST(tmp_path / "nowhere")


def test_missing_listed_file(tmp_path: Path) -> None:
    root = write_modelnet_h5(tmp_path / "mn")
    (root / "ply_data_train1.h5").unlink()
    with pytest.raises(FileNotFoundError) as exc:
        ModelNetH5(root, "train", num_points=8)
    assert "ply_data_train1.h5 is missing" in one_line(exc)


def test_truncated_h5(tmp_path: Path) -> None:
    root = write_modelnet_h5(tmp_path / "mn")
    path = root / "ply_data_train0.h5"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError) as exc:
        ModelNetH5(root, "train", num_points=8)
    msg = one_line(exc)
    assert str(path) in msg and "truncated or corrupt" in msg and "python -m datasets.modelnet40" in msg


def test_corrupt_h5(tmp_path: Path) -> None:
    root = write_scanobjectnn(tmp_path / "sonn", shapes=2, points=16)
    path = root / "main_split" / "training_objectdataset_augmentedrot_scale75.h5"
    path.write_bytes(b"this is not hdf5 at all" * 10)
    with pytest.raises(ValueError, match="not a readable HDF5 file") as exc:
        ScanObjectNN(root, "train", "PB_T50_RS", num_points=8)
    assert str(path) in one_line(exc)


def test_missing_keys(tmp_path: Path) -> None:
    root = write_modelnet_h5(tmp_path / "mn")
    with h5py.File(root / "ply_data_test0.h5", "w") as f:
        f["points"] = np.zeros((2, 64, 3), np.float32)
    with pytest.raises(ValueError) as exc:
        ModelNetH5(root, "test", num_points=8)
    assert "ply_data_test0.h5 lacks the dataset(s) ['data', 'label']" in one_line(exc)


def test_labels_out_of_range(tmp_path: Path) -> None:
    root = write_modelnet_h5(tmp_path / "mn")
    (root / "shape_names.txt").write_text("a\nb\n")  # the files use 4 classes
    with pytest.raises(ValueError) as exc:
        ModelNetH5(root, "train", num_points=8)
    msg = one_line(exc)
    assert "ply_data_train0.h5" in msg and "outside [0, 2)" in msg and "shape_names.txt" in msg


def test_non_finite_coordinates(tmp_path: Path) -> None:
    root = write_modelnet_h5(tmp_path / "mn")
    with h5py.File(root / "ply_data_train1.h5", "r+") as f:
        data = f["data"][()]
        data[3, 5, 1] = np.nan
        f["data"][...] = data
    with pytest.raises(ValueError) as exc:
        ModelNetH5(root, "train", num_points=8)
    msg = one_line(exc)
    assert "ply_data_train1.h5" in msg and "non-finite" in msg and "index 3" in msg


def test_fewer_points_than_requested(tmp_path: Path) -> None:
    root = write_modelnet_h5(tmp_path / "mn", points=64)
    with pytest.raises(ValueError) as exc:
        ModelNetH5(root, "train", num_points=1024)
    msg = one_line(exc)
    assert "ply_data_train0.h5 has 64 points per shape but num_points=1024" in msg and "at most 64" in msg
    res = write_resampled(tmp_path / "res", rows=50)
    with pytest.raises(ValueError, match="airplane_0001.txt has 50 points but 100 were requested"):
        ModelNet40Resampled(res, "train", num_points=100, cache_dir=tmp_path / "cache")


def test_bad_text_and_mesh_files(tmp_path: Path) -> None:
    res = write_resampled(tmp_path / "res")
    (res / "airplane" / "airplane_0002.txt").write_text("1,2,3\nnot,a,number\n")
    with pytest.raises(ValueError, match="airplane_0002.txt is not comma-separated numbers"):
        ModelNet40Resampled(res, "train", num_points=10, cache_dir=tmp_path / "cache")
    off = write_off_tree(tmp_path / "off")
    bad = off / "cube" / "train" / "cube_0001.off"
    bad.write_text("OFF\n8 6 0\n0 0 0\n")
    with pytest.raises(ValueError) as exc:
        read_off(bad)
    assert "cube_0001.off is not a valid OFF mesh" in one_line(exc)
    with pytest.raises(ValueError, match="cube_0001.off is not a valid OFF mesh"):
        ModelNetOff(off, "train", num_points=16, cache_dir=tmp_path / "cache")


def test_unreadable_image(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "imgs" / "cat"
    folder.mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(folder / "good.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    ds = ImageFolder(tmp_path / "imgs", image_size=16, train=False)
    with pytest.raises(ValueError) as exc:
        ds[[p.name for p, _ in ds.samples].index("broken.jpg")]
    msg = one_line(exc)
    assert "broken.jpg: cannot decode image" in msg and "remove or replace this file" in msg


def test_truncated_and_bad_idx(tmp_path: Path) -> None:
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((10, 28, 28)), compress=False)
    labels = write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(10), compress=True)
    labels.write_bytes(labels.read_bytes()[:-6])
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz is a corrupt or truncated gzip") as exc:
        MNIST(tmp_path, "train")
    one_line(exc)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(10), compress=True)
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:500])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte holds 500 bytes, not the 7856"):
        MNIST(tmp_path, "train")
    images.write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match="not an unsigned-byte idx file"):
        MNIST(tmp_path, "train")


def test_unknown_dataset_and_missing_root_name_the_config_key(tmp_path):
    from pointcoc.data import build_dataset

    with pytest.raises(ValueError, match=r"unknown dataset 'nosuch' \(data.name\); choose from .*modelnet10"):
        build_dataset("nosuch", root=tmp_path)
    with pytest.raises(ValueError, match=r"needs a root folder \(data.root\)"):
        build_dataset("modelnet10")


@pytest.mark.parametrize("name", ["modelnet10", "modelnet40"])
def test_modelnet_errors_suggest_the_script_of_that_set(tmp_path, name):
    from pointcoc.data import build_dataset

    with pytest.raises(FileNotFoundError) as err:
        build_dataset(name, root=tmp_path / "nowhere")
    assert f"python -m datasets.{name} --root DIR" in str(err.value)
    assert {"modelnet10": "modelnet40", "modelnet40": "modelnet10"}[name] not in str(err.value)
