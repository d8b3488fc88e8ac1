"""The official ModelNet40 vote: cumulative per-axis scaling views and the best-of-repeats summary."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pointcoc.data.point_transforms import official_vote_views
from pointcoc.engine.metrics import vote_repeats


def test_views_are_the_clean_batch_then_cumulative_scalings():
    torch.manual_seed(0)
    batch = torch.rand(2, 5, 4)  # xyz + one extra channel, which the vote leaves alone
    views = list(official_vote_views(batch, votes=4, generator=torch.Generator().manual_seed(3)))
    g = torch.Generator().manual_seed(3)
    draws = [(torch.rand(2, 1, 3, dtype=torch.float64, generator=g) * 0.3 + 0.85).float() for _ in range(3)]
    assert len(views) == 4 and torch.equal(views[0], batch)
    expected = batch.clone()
    for view, draw in zip(views[1:], draws):
        expected[..., :3] = expected[..., :3] * draw  # in place on the same batch, as voting.py
        assert torch.equal(view, expected)
        assert torch.equal(view[..., 3], batch[..., 3])
    # By hand for one coordinate: view 3 of shape 1, axis 2 is x * s1 * s2 * s3 (float32, in that order).
    x = batch[1, 0, 2]
    assert views[3][1, 0, 2] == ((x * draws[0][1, 0, 2]) * draws[1][1, 0, 2]) * draws[2][1, 0, 2]
    factors = torch.stack(draws)
    assert (factors >= 0.85).all() and (factors <= 1.15).all()
    assert not torch.equal(views[3][..., :3], batch[..., :3] * draws[2])  # cumulative, not one draw a view


def test_views_leave_the_input_untouched_and_refuse_zero_votes():
    batch = torch.rand(1, 3, 3)
    before = batch.clone()
    list(official_vote_views(batch, votes=3))
    assert torch.equal(batch, before)
    with pytest.raises(ValueError, match="votes must be >= 1"):
        next(official_vote_views(batch, votes=0))


def test_vote_repeats_reports_separate_maxima_and_mean_std():
    summary = vote_repeats([0.93, 0.94, 0.92], [0.91, 0.90, 0.92])
    assert summary["repeats"] == 3
    assert summary["oa"]["best_of_repeats"] == 0.94 and summary["macc"]["best_of_repeats"] == 0.92
    assert summary["oa"]["mean"] == pytest.approx(0.93)
    assert summary["oa"]["std"] == pytest.approx(np.std([0.93, 0.94, 0.92], ddof=1))
    assert "best of 3" in summary["label"] and "mean ± std" in summary["label"]
    assert vote_repeats([0.5], [0.4])["oa"]["std"] == 0.0
    with pytest.raises(ValueError, match="same non-zero number"):
        vote_repeats([0.9], [])
