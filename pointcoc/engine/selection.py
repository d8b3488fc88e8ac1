"""Which epoch a run keeps: the heldout protocol's validation maximum and the official protocol's best test
epoch, each a pure function of the per-epoch figures.

official: pointMLP-pytorch's ``main.py`` (ScanObjectNN and ModelNet40) scores the test set after every epoch
through ``validate``, which rounds OA and mAcc (``balanced_accuracy_score``) to ``float("%.3f" % (100 * x))``;
it keeps the first epoch whose rounded OA is strictly greater than the best so far (``best_checkpoint.pth``)
and reports the maximum rounded mAcc over epochs separately, possibly of another epoch. Its best starts at 0,
so an epoch at 0.000% is never kept there; here the first scored epoch always is (a run always has a best
checkpoint), the only difference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Score = Callable[[dict[str, Any]], float]

OFFICIAL_LABEL = (
    "official protocol: the best test epoch (selected on the test set itself; OA rounded to 0.001% as the "
    "official validate, first strict maximum), mAcc a separate maximum over epochs"
)


def official_percent(fraction: float) -> float:
    """A fraction as the official ``validate`` reports it: percent, rounded to three decimals."""
    return float("%.3f" % (100.0 * fraction))


def heldout_score(select_on: str) -> Score:
    """The validation figure (``"oa"`` or ``"macc"``) the heldout protocol maximises."""
    return lambda metrics: metrics[select_on]


def official_score(metrics: dict[str, Any]) -> float:
    """The official selection's key: test OA rounded as ``validate`` rounds it."""
    return official_percent(metrics["oa"])


def official_selection(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The official protocol's figures from per-epoch records holding ``epoch``, ``test_oa``, ``test_macc``
    (records without them are skipped): ``oa`` of the first epoch whose rounded OA beats all earlier ones
    strictly, ``macc`` likewise over mAcc on its own, their epochs, and the label to report them with."""
    best: dict[str, tuple[float, int, float]] = {}  # metric -> (rounded, epoch, value)
    for record in history:
        for metric in ("oa", "macc"):
            value = record.get(f"test_{metric}")
            if value is None:
                continue
            rounded = official_percent(value)
            if metric not in best or rounded > best[metric][0]:
                best[metric] = (rounded, int(record["epoch"]), float(value))
    if set(best) != {"oa", "macc"}:
        raise ValueError("official selection: no epoch of the history was scored on the test split")
    return {
        "oa": best["oa"][2],
        "macc": best["macc"][2],
        "oa_epoch": best["oa"][1],
        "macc_epoch": best["macc"][1],
        "label": OFFICIAL_LABEL,
    }
