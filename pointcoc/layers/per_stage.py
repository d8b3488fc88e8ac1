"""The check every staged model's constructor makes of its per-stage lists."""

from __future__ import annotations

from collections.abc import Sequence


def check_per_stage(stages: int | None = None, **lists: Sequence) -> None:
    """Each of ``lists`` (constructor arguments with one value per stage) must have ``stages`` values.

    ``stages=None``: as many as the first list has (the one that defines the stages, e.g. the widths).
    Refused in one line naming the first list that does not fit.
    """
    if stages is None:
        stages = len(next(iter(lists.values())))
    for name, values in lists.items():
        if len(values) != stages:
            raise ValueError(f"{name} must give one value per stage ({stages}), got {list(values)}")
