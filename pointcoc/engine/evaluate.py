"""Evaluation: class scores over a dataset (split across DDP ranks), metrics, test-time voting, and the
``test`` command (a checkpoint evaluated on ``data.split``)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from ..data.point_transforms import official_vote_views
from ..utils.amp import autocast
from ..utils.serialization import load_state_dict_strict
from .build import build_model, evaluation_weights, setup_process
from .checkpoint import check_compatible, load_checkpoint
from .config import RunConfig, save_config
from .data import BatchPrep, build_run_data, describe_split, voting_views
from .distributed import ONE_PROCESS, Dist, all_gather_objects, is_main
from .loaders import make_loader
from .metrics import confusion, summarize, top_k_accuracy, vote_repeats
from .rundir import environment, peak_memory, write_json
from .runfolder import open_test_folder


@dataclass(frozen=True)
class EvalContext:
    """How a dataset is scored: batch preparation (device, normalisation), batch size, autocast (``None``,
    ``"bf16"``, ``"fp16"``), loader workers and this process's share of the samples."""

    prep: BatchPrep
    batch_size: int
    amp: str | None = None
    num_workers: int = 0
    dist: Dist = ONE_PROCESS

    @classmethod
    def of_run(cls, config: RunConfig, prep: BatchPrep, dist: Dist) -> EvalContext:
        return cls(prep, config.train.batch_size, config.train.amp, config.data.num_workers, dist)


Views = Callable[[torch.Tensor], Iterable[torch.Tensor]]


@torch.no_grad()
def predict(
    model: nn.Module, dataset: Dataset, ctx: EvalContext, views: Views | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax scores ``[S, K]`` and labels ``[S]`` of the whole dataset, each rank scoring its share.

    ``views``: a batch of inputs -> the views whose softmax scores are averaged (None: the batch itself)."""
    model.eval()
    prep = ctx.prep
    loader = make_loader(dataset, ctx.batch_size, device=prep.device, num_workers=ctx.num_workers,
                         dist=ctx.dist)  # fmt: skip
    scores, labels = [], []
    for x, y in loader:
        inputs = prep.eval(x)
        total, n = None, 0
        for view in [inputs] if views is None else views(inputs):
            with autocast(prep.device, ctx.amp):
                score = torch.softmax(model(view).float(), dim=1)
            total, n = score if total is None else total + score, n + 1
        scores.append(total / n)
        labels.append(y)
    local = (torch.cat(scores).cpu().numpy(), torch.cat(labels).numpy()) if scores else (
        np.zeros((0, prep.num_classes), np.float32), np.zeros(0, np.int64))  # fmt: skip
    gathered = all_gather_objects(local)
    return np.concatenate([g[0] for g in gathered]), np.concatenate([g[1] for g in gathered])


def metrics_of(
    scores: np.ndarray, labels: np.ndarray, classes: list[str]
) -> tuple[dict[str, Any], np.ndarray]:
    matrix = confusion(labels, scores.argmax(axis=1), len(classes))
    metrics = summarize(matrix, classes)
    if scores.shape[1] > 5:  # with five classes or fewer top-5 is 1 by construction: left out
        metrics["top5"] = top_k_accuracy(scores, labels, 5)
    return metrics, matrix


def evaluate(
    model: nn.Module, dataset: Dataset, ctx: EvalContext, classes: list[str]
) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics (``oa``, ``macc``, ``per_class``, ``top5`` beyond five classes) and the confusion matrix."""
    return metrics_of(*predict(model, dataset, ctx), classes)


def vote(
    model: nn.Module, augmented: Dataset, ctx: EvalContext, *, votes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scores averaged over ``votes`` augmented views of each shape; the views are fixed by ``seed``.

    One fixed set of views: no repeats, no selecting the best of several votes. The views are drawn in
    this process (no loader workers), so they depend on ``seed`` and the rank alone.
    """
    ctx = dataclasses.replace(ctx, num_workers=0)
    total, labels = None, None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 7919 * ctx.dist.rank)
        for _ in range(votes):
            scores, labels = predict(model, augmented, ctx)
            total = scores if total is None else total + scores
    return total / votes, labels


def official_vote(
    model: nn.Module,
    test: Dataset,
    ctx: EvalContext,
    classes: list[str],
    *,
    votes: int,
    repeats: int,
    seed: int,
) -> dict[str, Any]:
    """The official ModelNet40 vote (voting.py): each repeat scores the clean test set, every batch averaged
    over :func:`official_vote_views` (view 0 clean, then cumulative per-axis scalings); the summary is
    :func:`vote_repeats`: the best repeat, as voting.py prints it, beside the mean ± std over all repeats
    (each repeat's figures under ``per_repeat``). The scalings are drawn from ``seed`` and the rank alone."""
    generator = torch.Generator().manual_seed(seed + 7919 * ctx.dist.rank)
    oa, macc = [], []
    for _ in range(repeats):
        scores, labels = predict(
            model, test, ctx, lambda x: official_vote_views(x, votes, generator=generator)
        )
        metrics, _ = metrics_of(scores, labels, classes)
        oa.append(metrics["oa"])
        macc.append(metrics["macc"])
    return {**vote_repeats(oa, macc), "views": votes, "seed": seed, "per_repeat": {"oa": oa, "macc": macc}}


VOTE_PROTOCOLS = ("ours", "official")
OFFICIAL_REPEATS = 300  # voting.py's NUM_PEPEAT


def evaluate_checkpoint(
    config: RunConfig,
    checkpoint: str | Path,
    out: str | Path,
    votes: int = 0,
    vote_protocol: str = "ours",
    repeats: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on ``data.split``; with ``votes`` also the voted accuracy, reported apart:
    ``ours`` (``test_votes``: ``votes`` views of the training augmentation, one fixed draw) or ``official``
    (``test_votes_official``: the official ModelNet40 vote, ``repeats`` times, 300 by default).

    Writes ``out`` (config.yaml, environment.json, metrics.json, test.log): a new folder, or with
    ``overwrite`` a previous test's; never a folder holding anything else (see :mod:`.runfolder`)."""
    if vote_protocol not in VOTE_PROTOCOLS:
        raise ValueError(f"--vote-protocol must be one of {', '.join(VOTE_PROTOCOLS)}, got {vote_protocol!r}")
    if repeats is not None and (vote_protocol != "official" or repeats < 1):
        raise ValueError("--vote-repeats takes a positive count, with --vote-protocol official")
    out = Path(out)
    with open_test_folder(out, overwrite):
        return _evaluate_checkpoint(config, Path(checkpoint), out, votes, vote_protocol, repeats)


def _evaluate_checkpoint(
    config: RunConfig, checkpoint: Path, out: Path, votes: int, vote_protocol: str, repeats: int | None
) -> dict[str, Any]:
    start = time.perf_counter()
    device, dist = setup_process(config)
    state = load_checkpoint(checkpoint)
    check_compatible(state, config, checkpoint, resume=False)
    run_data = build_run_data(config.data, train=False)
    if votes > 0 and not run_data.is_points:
        raise ValueError("--votes averages augmented point-cloud views; it is not defined for images")
    trained_on = state.get("classes")
    if trained_on and list(trained_on) != run_data.classes:
        raise ValueError(
            f"{checkpoint} was trained on {len(trained_on)} classes ({', '.join(trained_on[:4])}, ...) but "
            f"the data has {len(run_data.classes)} ({', '.join(run_data.classes[:4])}, ...); evaluate it on "
            "data with the same class list"
        )
    about = describe_split(config.data, run_data.test)
    if is_main():
        print(f"evaluating {checkpoint} (epoch {state['epoch']}) on {about}", flush=True)
    prep = BatchPrep(run_data, dataclasses.replace(config.data, augment=False), 0.0, device)
    model = build_model(config, len(run_data.classes), run_data.input_kind).to(device)
    load_state_dict_strict(model, evaluation_weights(state), checkpoint)
    ctx = EvalContext.of_run(config, prep, dist)
    metrics: dict[str, Any] = {}
    metrics["test"], matrix = evaluate(model, run_data.test, ctx, run_data.classes)
    if votes > 0:
        if not run_data.is_points:
            raise ValueError("--votes averages augmented point-cloud views; it is not defined for images")
        if vote_protocol == "official":
            metrics["test_votes_official"] = official_vote(
                model, run_data.test, ctx, run_data.classes, votes=votes, seed=config.seed,
                repeats=OFFICIAL_REPEATS if repeats is None else repeats,
            )  # fmt: skip
        else:
            views = voting_views(config.data, run_data.test)
            scores = vote(model, views, ctx, votes=votes, seed=config.seed)
            metrics["test_votes"], _ = metrics_of(*scores, run_data.classes)
            metrics["votes"] = {"views": votes, "seed": config.seed}
    metrics["checkpoint"] = {"path": str(checkpoint.resolve()), "epoch": state["epoch"]}
    metrics["data"] = {"evaluated": about, "samples": len(run_data.test)}  # type: ignore[arg-type]
    metrics["confusion_matrix"] = matrix.tolist()
    metrics["timing"] = {"total_s": time.perf_counter() - start}
    metrics["peak_memory"] = peak_memory(device)
    if is_main():
        save_config(config, out / "config.yaml")
        write_json(environment(), out / "environment.json")
        write_json(metrics, out / "metrics.json")
    return metrics
