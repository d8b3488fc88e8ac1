"""Classification metrics from a confusion matrix (rows: true, columns: predicted); top-k from scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``[K, K]`` counts, ``[true, predicted]``: the counting itself (scikit-learn's costs 2 s of import)."""
    pairs = np.asarray(labels, np.int64) * num_classes + np.asarray(predictions, np.int64)
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def summarize(matrix: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """``{"oa", "macc", "per_class": {name: acc}}`` as fractions; classes absent from the split are left
    out of ``per_class`` and of the class mean rather than counted as 0."""
    totals = matrix.sum(axis=1)
    present = totals > 0
    per_class = np.divide(np.diag(matrix), totals, out=np.zeros(len(totals)), where=present)
    return {
        "oa": float(np.trace(matrix) / max(matrix.sum(), 1)),
        "macc": float(per_class[present].mean()) if present.any() else 0.0,
        "per_class": {str(name): float(per_class[i]) for i, name in enumerate(class_names) if present[i]},
    }


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of samples whose label is among their ``k`` highest scores (ties broken by class order)."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).sum() / max(len(labels), 1))
