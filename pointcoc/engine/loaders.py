"""The one place the engine builds DataLoaders: sampling across DDP ranks, workers and pinned memory."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

from .distributed import ONE_PROCESS, Dist


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    device: torch.device,
    num_workers: int = 0,
    dist: Dist = ONE_PROCESS,
    shuffle_seed: int | None = None,
    sample_weights: np.ndarray | None = None,
) -> DataLoader:
    """Training (``shuffle_seed`` given): each rank draws ``batch_size // world`` samples per step from its
    share of an epoch's shuffle (``DistributedSampler``: call ``loader.sampler.set_epoch`` every epoch),
    partial batches dropped; with ``sample_weights`` (one per sample) an epoch draws ``len(dataset)``
    samples with replacement in proportion to them instead (:class:`WeightedDistributedSampler`).
    Evaluation: the rank takes every ``world``-th sample in order, in batches of ``batch_size``, nothing
    dropped or padded (so no sample is counted twice).

    Workers are not kept between epochs: they are re-created, and so re-seeded from the per-epoch seed."""
    pin = device.type == "cuda"
    if shuffle_seed is None:
        shard = Subset(dataset, list(range(dist.rank, len(dataset), dist.world)))  # type: ignore[arg-type]
        return DataLoader(shard, batch_size=batch_size, num_workers=num_workers, pin_memory=pin)
    sampler: Sampler = (
        DistributedSampler(dataset, dist.world, dist.rank, shuffle=True, seed=shuffle_seed, drop_last=True)
        if sample_weights is None
        else WeightedDistributedSampler(sample_weights, dist, shuffle_seed)
    )
    return DataLoader(
        dataset, batch_size=batch_size // dist.world, sampler=sampler, drop_last=True,
        num_workers=num_workers, pin_memory=pin,
    )  # fmt: skip


class WeightedDistributedSampler(Sampler[int]):
    """``len(weights)`` indices an epoch, drawn with replacement with probability proportional to
    ``weights`` (torch's ``WeightedRandomSampler``), the same draw on every rank from ``(seed, epoch)``,
    each rank taking every ``world``-th of them (as ``DistributedSampler`` shards its shuffle)."""

    def __init__(self, weights: np.ndarray, dist: Dist, seed: int) -> None:
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.dist, self.seed, self.epoch = dist, seed, 0
        self.num_samples = len(weights) // dist.world

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(self.weights, len(self.weights), replacement=True, generator=g)
        return iter(drawn[self.dist.rank :: self.dist.world][: self.num_samples].tolist())

    def __len__(self) -> int:
        return self.num_samples
