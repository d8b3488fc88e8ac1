"""Acceptance (issue #15): the CPU recipes trained through the command line on a copy of the shared training
data, then evaluated with ``test`` on a folder that holds only a test split, from another directory.

The copies keep the shared layout but hold a stratified subset of the shared training split (a few samples
per class) and the runs are cut to one epoch with ``--set train.epochs=1``, so each takes seconds; the
recipes (``experiments/modelnet10/pointset_coc.yaml``, ``experiments/mnist/coc_tiny_small.yaml``), their data
readers and the commands are the real ones. The test folder holds samples the training copy does not.
Skipped, saying so, when ``../shared/data`` is absent.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_run_folder import snapshot

import main
from pointcoc.data.images import read_idx
from pointcoc.engine import load_config

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
MODELNET10 = SHARED_DATA / "modelnet10_hdf5_1024"
MNIST = SHARED_DATA / "mnist"


def need(folder: Path) -> None:
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: the acceptance runs need the shared data")


def stratified(labels: np.ndarray, per_class: int, skip: int = 0) -> np.ndarray:
    """Indices of ``per_class`` samples of every class, after the first ``skip`` of each."""
    return np.sort(
        np.concatenate([np.flatnonzero(labels == c)[skip : skip + per_class] for c in np.unique(labels)])
    )


def write_modelnet(folder: Path, split: str, points: np.ndarray, labels: np.ndarray) -> Path:
    """``folder`` in the layout of ``modelnet10_hdf5_1024`` holding one split."""
    folder.mkdir(parents=True)
    (folder / "shape_names.txt").write_bytes((MODELNET10 / "shape_names.txt").read_bytes())
    (folder / f"{split}_files.txt").write_text(f"data/modelnet10_hdf5_1024/ply_data_{split}0.h5\n")
    with h5py.File(folder / f"ply_data_{split}0.h5", "w") as f:
        f["data"], f["label"] = points, labels[:, None]
    return folder


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, np.uint8).tobytes()))


def train_then_test(
    recipe: Path, data: Path, test_data: Path, tmp_path: Path, capsys, *train_set: str
) -> dict:
    """``train`` the recipe on ``data`` for one epoch, then ``test`` its best checkpoint on ``test_data``
    (the test split only), both from a directory that is not the repository; returns the test's metrics."""
    run, evaluation = tmp_path / "run", tmp_path / "eval"
    argv = [
        "train",
        "--config",
        str(recipe),
        "--out",
        str(run),
        "--set",
        f"data.root={data}",
        "train.epochs=1",
    ]
    assert main.main(argv) == 0, capsys.readouterr().err
    saved = load_config(run / "config.yaml")
    assert saved.data.root == str(data)  # absolute in the run's config.yaml
    trained = snapshot(run)
    capsys.readouterr()
    argv = ["test", "--config", str(recipe), "--checkpoint", str(run / "checkpoint_best.pt"), "--out",
            str(evaluation), "--set", f"data.root={test_data}", "data.split=test"]  # fmt: skip
    assert main.main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert f"in {test_data}, split 'test': {metrics['data']['samples']} samples" in printed
    assert (evaluation / "test.log").read_text() == printed
    assert snapshot(run) == trained  # the training run is left as it was
    return metrics


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """The commands run from a directory that is not the repository."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.mark.slow
def test_modelnet10_recipe_trains_on_a_copy_and_tests_on_a_test_split_only_folder(
    tmp_path, elsewhere, capsys
):
    need(MODELNET10)
    recipe = ROOT / "experiments" / "modelnet10" / "pointset_coc.yaml"
    # the recipe's path, wherever we are (compared resolved: ../shared may be a link)
    assert Path(load_config(recipe).data.root).resolve() == MODELNET10.resolve()
    with h5py.File(MODELNET10 / "ply_data_train0.h5", "r") as f:
        points, labels = f["data"][()], f["label"][()].reshape(-1)
    train, test = stratified(labels, 10), stratified(labels, 5, skip=10)
    data = write_modelnet(tmp_path / "train_copy", "train", points[train], labels[train])
    test_data = write_modelnet(tmp_path / "test_only", "test", points[test], labels[test])
    metrics = train_then_test(recipe, data, test_data, tmp_path, capsys)
    assert metrics["data"]["samples"] == len(test) == 50 and 0 <= metrics["test"]["oa"] <= 1


@pytest.mark.slow
def test_mnist_recipe_trains_on_a_copy_and_tests_on_a_test_split_only_folder(tmp_path, elsewhere, capsys):
    need(MNIST)
    recipe = ROOT / "experiments" / "mnist" / "coc_tiny_small.yaml"
    assert Path(load_config(recipe).data.root).resolve() == MNIST.resolve()
    images, labels = read_idx(MNIST / "images-idx3-ubyte.gz"), read_idx(MNIST / "labels-idx1-ubyte.gz")
    train, test = stratified(labels, 30), stratified(labels, 8, skip=30)
    data, test_data = tmp_path / "train_copy", tmp_path / "test_only"
    data.mkdir()
    test_data.mkdir()
    write_idx(data / "images-idx3-ubyte.gz", images[train])  # an unprefixed pair, as the shared copy
    write_idx(data / "labels-idx1-ubyte.gz", labels[train])
    write_idx(test_data / "t10k-images-idx3-ubyte.gz", images[test])  # MNIST's test split names
    write_idx(test_data / "t10k-labels-idx1-ubyte.gz", labels[test])
    metrics = train_then_test(recipe, data, test_data, tmp_path, capsys)
    assert metrics["data"]["samples"] == len(test) == 80 and 0 <= metrics["test"]["oa"] <= 1
