"""The preparation commands in datasets/: checksums, atomic unpack, conversion and --check reports."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
from test_data_layouts import SHARED_DATA, write_idx, write_modelnet_h5, write_off_tree, write_scanobjectnn

from datasets import mnist, modelnet10, modelnet40, scanobjectnn
from datasets._common import download, unpack_zip


def test_download_verifies_sha256(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"payload" * 100)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    got = download(source.as_uri(), tmp_path / "out" / "file.bin", f"sha256:{digest}")
    assert got.read_bytes() == source.read_bytes() and "sha256 verified" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="does not match the expected"):
        download(source.as_uri(), tmp_path / "out2" / "file.bin", "sha256:" + "0" * 64)
    with pytest.raises(SystemExit, match="download of .* failed"):
        download((tmp_path / "absent.bin").as_uri(), tmp_path / "out3" / "file.bin")
    assert not (tmp_path / "out3" / "file.bin.part").exists()


def test_unpack_is_atomic(tmp_path: Path) -> None:
    src = write_modelnet_h5(tmp_path / "build" / "modelnet40_ply_hdf5_2048", shapes=4, points=8)
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in src.iterdir():
            z.write(f, f"modelnet40_ply_hdf5_2048/{f.name}")
    dest = tmp_path / "data"
    dest.mkdir()
    target = unpack_zip(archive, dest, "modelnet40_ply_hdf5_2048")
    assert sorted(p.name for p in dest.iterdir()) == ["modelnet40_ply_hdf5_2048"]  # no temp folder left
    assert modelnet40.main(["--check", str(target)]) == 0
    broken = tmp_path / "broken.zip"
    broken.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(SystemExit, match="not a valid zip"):
        unpack_zip(broken, tmp_path / "data", "other")
    assert sorted(p.name for p in dest.iterdir()) == ["modelnet40_ply_hdf5_2048"]


def test_modelnet10_convert_and_check(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    off = write_off_tree(tmp_path / "ModelNet10")
    out = tmp_path / "modelnet10_hdf5_64"
    assert modelnet10.main(["--convert", str(off), "--out", str(out), "--points", "64"]) == 0
    report = capsys.readouterr().out
    assert "[train]: 2 samples, 2 classes" in report and "points per shape: 64" in report
    assert (out / "shape_names.txt").read_text().split() == ["cube", "tetra"]
    assert modelnet10.main(["--check", str(tmp_path / "nowhere")]) == 1
    assert "check failed:" in capsys.readouterr().err


def test_scanobjectnn_steps_and_check(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert scanobjectnn.main([]) == 0
    assert "request form" in capsys.readouterr().out
    root = write_scanobjectnn(tmp_path / "h5_files", shapes=3, points=32)
    assert scanobjectnn.main(["--check", str(root)]) == 0
    report = capsys.readouterr().out
    assert report.count("samples, 15 classes") == 20  # 6 variants, PB_* with and without background, 2 splits


def test_mnist_check(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import numpy as np

    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((5, 28, 28)), compress=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(5), compress=True)
    assert mnist.main(["--check", str(tmp_path)]) == 0
    assert "[train]: 5 samples, 10 classes" in capsys.readouterr().out


@pytest.mark.slow
def test_check_real_modelnet10(capsys: pytest.CaptureFixture) -> None:
    root = SHARED_DATA / "modelnet10_hdf5_1024"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    assert modelnet10.main(["--check", str(root)]) == 0
    report = capsys.readouterr().out
    assert "3991 samples, 10 classes" in report and "points per shape: 1024" in report
