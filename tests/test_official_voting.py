"""The official ModelNet40 vote: cumulative per-axis scaling views and the best-of-repeats summary."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import main
from pointcoc.data.point_transforms import official_vote_views
from pointcoc.engine.config import load_config
from pointcoc.engine.evaluate import EvalContext, official_vote
from pointcoc.engine.metrics import vote_repeats
from pointcoc.engine.trainer import train


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


class Linear(torch.nn.Module):
    """A point model small enough to score by hand: mean of the cloud through a linear map."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=1))


def test_official_vote_averages_softmax_over_the_views_batch_by_batch():
    class Prep:  # the batch preparation of a point set: inputs unchanged, on the CPU
        device, num_classes = torch.device("cpu"), 3

        def eval(self, x: torch.Tensor) -> torch.Tensor:
            return x

    torch.manual_seed(0)
    model, points, labels = Linear(), torch.randn(5, 16, 3), torch.tensor([0, 1, 2, 0, 1])
    ctx = EvalContext(Prep(), batch_size=2)  # type: ignore[arg-type]
    result = official_vote(model, TensorDataset(points, labels), ctx, ["a", "b", "c"], votes=3, repeats=2,
                           seed=4)  # fmt: skip
    # by hand: the same generator, batches of 2 in order, each repeat continuing the draws
    g = torch.Generator().manual_seed(4)
    oa = []
    with torch.no_grad():
        for _ in range(2):
            correct = 0
            for start in range(0, 5, 2):
                batch = points[start : start + 2]
                views = list(official_vote_views(batch, 3, generator=g))
                score = sum(torch.softmax(model(v), dim=1) for v in views) / 3
                correct += (score.argmax(1) == labels[start : start + 2]).sum().item()
            oa.append(correct / 5)
    assert result["per_repeat"]["oa"] == oa
    assert result["oa"]["best_of_repeats"] == max(oa) and result["oa"]["mean"] == pytest.approx(np.mean(oa))
    assert result["repeats"] == 2 and result["views"] == 3 and "best of 2" in result["label"]


def test_test_command_reports_best_of_repeats_beside_mean_and_std(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(
        "device: cpu\nseed: 3\nruntime: {progress: false, threads: 1}\nlog: {cluster_images_every: 0}\n"
        "model: {name: pointmlp_elite, kwargs: {k_neighbors: [8, 8, 8, 8], drop_rate: 0.0}}\n"
        "data: {num_points: 64, kwargs: {per_class: 4, classes: 3}}\n"
        "train: {epochs: 1, batch_size: 4, optimizer: adamw, lr: 0.003, min_lr: 0.0001}\n"
    )
    train(load_config(config), tmp_path / "run")
    checkpoint = str(tmp_path / "run" / "checkpoint_best.pt")
    args = ["test", "--config", str(config), "--checkpoint", checkpoint, "--votes", "2"]
    capsys.readouterr()
    official = ["--vote-protocol", "official", "--vote-repeats", "3"]
    assert main.main([*args, *official, "--out", str(tmp_path / "t")]) == 0
    printed = capsys.readouterr().out
    voted = json.loads((tmp_path / "t" / "metrics.json").read_text())["test_votes_official"]
    oa = voted["per_repeat"]["oa"]
    assert len(oa) == 3 and voted["oa"]["best_of_repeats"] == max(oa)
    assert voted["oa"]["std"] == pytest.approx(np.std(oa, ddof=1))
    # the best repeat, labelled as the test-set selection it is, always printed beside mean ± std
    best_line = next(line for line in printed.splitlines() if line.startswith("votes, best of 3"))
    mean_line = next(line for line in printed.splitlines() if line.startswith("votes, mean ± std"))
    assert f"{max(oa):.2%}" in best_line and f"{np.mean(oa):.2%}" in mean_line
    assert f"± {voted['oa']['std']:.2%}" in mean_line and "selected on the test set" in printed
    # our vote has no repeats: asking for them is a one-line error
    assert main.main([*args, "--vote-repeats", "3", "--out", str(tmp_path / "u")]) == 2
    assert "--vote-repeats takes a positive count, with --vote-protocol official" in capsys.readouterr().err
