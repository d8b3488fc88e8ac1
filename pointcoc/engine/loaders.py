"""The one place the engine builds DataLoaders: sampling across DDP ranks, workers and pinned memory."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from .distributed import ONE_PROCESS, Dist


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    device: torch.device,
    num_workers: int = 0,
    dist: Dist = ONE_PROCESS,
    shuffle_seed: int | None = None,
) -> DataLoader:
    """Training (``shuffle_seed`` given): each rank draws ``batch_size // world`` samples per step from its
    share of an epoch's shuffle (``DistributedSampler``: call ``loader.sampler.set_epoch`` every epoch),
    partial batches dropped. Evaluation: the rank takes every ``world``-th sample in order, in batches of
    ``batch_size``, nothing dropped or padded (so no sample is counted twice).

    Workers are not kept between epochs: they are re-created, and so re-seeded from the per-epoch seed."""
    pin = device.type == "cuda"
    if shuffle_seed is None:
        shard = Subset(dataset, list(range(dist.rank, len(dataset), dist.world)))  # type: ignore[arg-type]
        return DataLoader(shard, batch_size=batch_size, num_workers=num_workers, pin_memory=pin)
    sampler = DistributedSampler(
        dataset, dist.world, dist.rank, shuffle=True, seed=shuffle_seed, drop_last=True
    )
    return DataLoader(
        dataset, batch_size=batch_size // dist.world, sampler=sampler, drop_last=True,
        num_workers=num_workers, pin_memory=pin,
    )  # fmt: skip
