import numpy as np
import pytest
import torch

from pointcoc.engine.data import holdout, pointmlp_targets
from pointcoc.engine.metrics import confusion, summarize


def test_metrics_of_a_known_confusion_matrix():
    matrix = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 6]])  # rows: true class
    m = summarize(matrix, ["a", "b", "c"])
    assert m["oa"] == pytest.approx(17 / 20)
    assert m["per_class"] == pytest.approx({"a": 0.8, "b": 0.75, "c": 1.0})
    assert m["macc"] == pytest.approx((0.8 + 0.75 + 1.0) / 3)


def test_confusion_from_predictions_and_absent_classes():
    labels, preds = np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0])
    matrix = confusion(labels, preds, 3)
    assert matrix.tolist() == [[1, 1, 0], [1, 2, 0], [0, 0, 0]]
    m = summarize(matrix, ["a", "b", "c"])
    assert set(m["per_class"]) == {"a", "b"} and m["macc"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_pointmlp_label_smoothing_spreads_over_the_other_classes():
    t = pointmlp_targets(torch.tensor([2]), 5, 0.2)
    assert t[0, 2] == pytest.approx(0.8) and t[0, 0] == pytest.approx(0.05) and t.sum() == pytest.approx(1)


def test_holdout_is_stratified_disjoint_and_fixed():
    labels = np.repeat(np.arange(4), 10)
    val, test, rest = holdout(labels, (0.2, 0.1))
    assert np.bincount(labels[val]).tolist() == [2] * 4 and np.bincount(labels[test]).tolist() == [1] * 4
    assert len(np.intersect1d(val, rest)) == 0 and len(val) + len(test) + len(rest) == 40
    assert all((a == b).all() for a, b in zip(holdout(labels, (0.2, 0.1)), (val, test, rest)))
