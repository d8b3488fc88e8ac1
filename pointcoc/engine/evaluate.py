"""Evaluation: class scores over a dataset (split across DDP ranks), metrics, and test-time voting."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset, Subset

from ..data import build_loader
from ..utils.amp import autocast
from .data import BatchPrep
from .distributed import all_gather_objects
from .metrics import confusion, summarize, top_k_accuracy


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: Dataset,
    prep: BatchPrep,
    batch_size: int,
    amp: str | None,
    rank: int = 0,
    world: int = 1,
    num_workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax scores ``[S, K]`` and labels ``[S]`` of the whole dataset, each rank scoring every
    ``world``-th sample (no padding, so no sample is counted twice)."""
    model.eval()
    shard = Subset(dataset, list(range(rank, len(dataset), world)))  # type: ignore[arg-type]
    scores, labels = [], []
    for x, y in build_loader(shard, batch_size, num_workers=num_workers):
        with autocast(prep.device, amp):
            logits = model(prep.eval(x))
        scores.append(torch.softmax(logits.float(), dim=1))
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


def vote(
    model: nn.Module,
    augmented: Dataset,
    prep: BatchPrep,
    votes: int,
    seed: int,
    batch_size: int,
    amp: str | None,
    rank: int = 0,
    world: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores averaged over ``votes`` augmented views of each shape; the views are fixed by ``seed``.

    One fixed set of views: no repeats, no selecting the best of several votes.
    """
    total, labels = None, None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 7919 * rank)
        for _ in range(votes):
            scores, labels = predict(model, augmented, prep, batch_size, amp, rank, world)
            total = scores if total is None else total + scores
    return total / votes, labels
