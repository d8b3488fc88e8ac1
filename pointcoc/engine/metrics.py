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


def vote_repeats(oa: Sequence[float], macc: Sequence[float]) -> dict[str, Any]:
    """Summary of ``R`` repeats of a test-time vote, per metric: the best repeat and the mean ± std.

    The best is what the official voting.py prints (``best_acc`` and ``best_mean_acc``, two separate
    maxima over the repeats, so they may come from different repeats): a selection on the test set,
    labelled as such. The mean and the sample standard deviation (ddof=1; 0 for one repeat) over the
    same repeats always go beside it.
    """
    if not oa or len(oa) != len(macc):
        raise ValueError(
            f"need the same non-zero number of OA and mAcc repeats, got {len(oa)} and {len(macc)}"
        )
    out: dict[str, Any] = {"repeats": len(oa)}
    for name, values in (("oa", np.asarray(oa, dtype=float)), ("macc", np.asarray(macc, dtype=float))):
        out[name] = {
            "best_of_repeats": float(values.max()),
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        }
    out["label"] = (
        f"best of {len(oa)} vote repeats (official voting.py: OA and mAcc maxima taken separately, "
        f"selected on the test set), beside mean ± std over the same repeats"
    )
    return out
