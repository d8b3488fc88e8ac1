"""Protocols and recipe options of the engine: the official protocol's selection (a pure function of the
per-epoch history), the heldout protocol's figures, the class-balanced holdout, class balancing."""

import json

import numpy as np
import pytest
import torch
from test_engine_helpers import tiny_point_config

from pointcoc.engine.checkpoint import load_checkpoint
from pointcoc.engine.data import build_run_data, class_weights, dataset_labels, holdout, soft_cross_entropy
from pointcoc.engine.distributed import Dist
from pointcoc.engine.loaders import WeightedDistributedSampler
from pointcoc.engine.selection import official_percent, official_selection
from pointcoc.engine.trainer import train


def test_official_selection_on_a_known_history():
    history = [
        {"epoch": 1, "loss": 2.0},  # not scored: skipped
        {"epoch": 2, "test_oa": 0.85, "test_macc": 0.80},
        {"epoch": 3, "test_oa": 0.850004, "test_macc": 0.83},  # 85.000% rounded: no strict gain, epoch 2 kept
        {"epoch": 4, "test_oa": 0.86, "test_macc": 0.81},
        {"epoch": 5, "test_oa": 0.86, "test_macc": 0.8300049},  # ties: the earlier epoch stays
        {"epoch": 6, "test_oa": 0.84, "test_macc": 0.82},
    ]
    best = official_selection(history)
    # OA: 85.000 (2) -> 85.000 (3, not greater) -> 86.000 (4) -> 86.000 (5, a tie) -> 84 (6)
    # mAcc, its own maximum over epochs: 80.000 (2) -> 83.000 (3) -> 83.000 (5 rounds to 83.000: a tie)
    assert (best["oa"], best["oa_epoch"], best["macc"], best["macc_epoch"]) == (0.86, 4, 0.83, 3)
    assert "selected on the test set" in best["label"]
    assert official_percent(0.8500049) == 85.0 and official_percent(0.8500051) == 85.001
    assert official_selection(history[:3])["oa_epoch"] == 2  # a function of the history alone
    with pytest.raises(ValueError, match="no epoch"):
        official_selection(history[:1])


def one_split(*extra: str):
    """The tiny point config as a one-split set: validation and test parts held out of the training split."""
    return tiny_point_config("data.split=null", "data.val_split=null", "data.val_fraction=0.25",
                             "data.test_fraction=0.25", "data.kwargs={per_class: 8, classes: 3}",
                             *extra)  # fmt: skip


def test_official_data_trains_on_the_validation_part_and_keeps_the_same_test_part():
    heldout = build_run_data(one_split().data)
    official = build_run_data(one_split().data, protocol="official")
    assert official.test.indices == heldout.test.indices  # the same test part under both protocols
    assert official.val is official.test  # the split the official protocol selects on
    assert sorted(official.train.indices) == sorted(heldout.train.indices + heldout.val.indices)
    with pytest.raises(ValueError, match="train.protocol official selects the epoch on the test split"):
        tiny_point_config("data.split=null", "train.protocol=official")
    with pytest.raises(ValueError, match="set train.eval_every to 1"):
        tiny_point_config("train.protocol=official", "train.eval_every=2")


def test_official_run_reports_the_best_test_epoch_from_its_history(tmp_path):
    metrics = train(tiny_point_config("train.protocol=official"), tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["protocol"] == "official" and "val" not in saved and "test" not in saved
    history = saved["history"]
    assert all("test_oa" in r and "val_oa" not in r for r in history)  # the test split, every epoch
    assert saved["test_official"] == official_selection(history) == metrics["test_official"]
    best_epoch = saved["test_official"]["oa_epoch"]
    assert load_checkpoint(tmp_path / "checkpoint_best.pt")["epoch"] == best_epoch
    assert saved["selection"]["best_epoch"] == best_epoch
    assert saved["test_last"]["oa"] == history[-1]["test_oa"]
    assert saved["distributed"] == {"processes": 1, "batch_per_process": 4, "sync_bn": False}


def test_heldout_run_selects_on_validation_macc_and_reports_the_last_epoch(tmp_path):
    metrics = train(one_split("train.select_on=macc", "train.epochs=4"), tmp_path)
    history = metrics["history"]
    maccs = [r["val_macc"] for r in history]
    first_max = 1 + maccs.index(max(maccs))
    assert metrics["protocol"] == "heldout" and metrics["selection"]["criterion"] == "val macc"
    assert metrics["selection"]["best_epoch"] == first_max
    assert metrics["val"]["last"]["macc"] == maccs[-1]
    assert {"test", "test_last"} <= set(metrics)
    if first_max == len(history):
        assert metrics["test_last"] == metrics["test"]


def test_balanced_holdout_takes_equal_counts_per_class_and_stratifies_the_test_part():
    labels = np.repeat([0, 1, 2], [100, 40, 60])  # 200 samples, 3 classes
    val, test, rest = holdout(labels, (0.15, 0.2), balanced=True)
    assert np.bincount(labels[val]).tolist() == [10, 10, 10]  # round(0.15 * 200 / 3)
    assert np.bincount(labels[test]).tolist() == [20, 8, 12]  # stratified: 20% of each class
    assert len(np.intersect1d(val, test)) == 0 and len(val) + len(test) + len(rest) == 200
    again = holdout(labels, (0.15, 0.2), balanced=True)
    assert all((a == b).all() for a, b in zip(again, (val, test, rest)))
    with pytest.raises(ValueError, match="class 1 has 40 samples .* lower data.val_fraction"):
        holdout(labels, (0.35,), balanced=True)  # 23 of 40 would leave fewer than 23 to train on
    with pytest.raises(ValueError, match="data.holdout balanced draws the validation part"):
        tiny_point_config("data.holdout=balanced")  # the procedural set has its own val split


def test_class_balancing_weights_and_sampler():
    labels = np.array([0, 0, 0, 1, 2, 2])
    assert class_weights(labels, 4).tolist() == [6 / 12, 6 / 4, 6 / 8, 0.0]  # S / (K n_c), absent class 0
    # the weighted loss of soft targets is torch's cross_entropy with per-class weights
    logits, targets = torch.randn(5, 4), torch.softmax(torch.randn(5, 4), dim=1)
    weight = torch.tensor([0.5, 1.5, 0.75, 1.0])
    expected = torch.nn.functional.cross_entropy(logits, targets, weight=weight)
    torch.testing.assert_close(soft_cross_entropy(logits, targets, weight), expected)
    # drawn in proportion to 1 / n_c: each class about a third of the draws; ranks split one draw
    labels = np.repeat([0, 1, 2], [300, 60, 40])
    draws = []
    for epoch in range(20):
        ranks = [WeightedDistributedSampler(class_weights(labels, 3)[labels], Dist(r, 2), seed=1)
                 for r in range(2)]  # fmt: skip
        for sampler in ranks:
            sampler.set_epoch(epoch)
        a, b = (list(s) for s in ranks)
        assert len(a) == len(b) == 200
        draws += a + b
    shares = np.bincount(labels[draws], minlength=3) / len(draws)
    assert np.abs(shares - 1 / 3).max() < 0.03


def test_class_balanced_runs_train(tmp_path):
    for mode in ("sampler", "loss"):
        config = one_split(f"train.class_balance={mode}", "train.epochs=1")
        metrics = train(config, tmp_path / mode)
        assert np.isfinite(metrics["history"][0]["loss"])
    labels = dataset_labels(build_run_data(one_split().data).train)
    assert len(labels) == 12 and set(labels.tolist()) == {0, 1, 2}
