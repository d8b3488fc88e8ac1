"""``torch.distributed`` set-up for ``torchrun`` (NCCL on GPUs, gloo on CPU) and cross-rank helpers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """This process's place among the run's processes: ``rank`` of ``world``."""

    rank: int = 0
    world: int = 1


ONE_PROCESS = Dist()


def init_distributed(device_type: str) -> Dist:
    """Joins the process group when launched by torchrun with several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    if dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size())
    return ONE_PROCESS


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0, also before the process group is joined (torchrun sets ``RANK``)."""
    if dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def all_gather_objects(obj: Any) -> list[Any]:
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


class _AllReduceSum(torch.autograd.Function):
    # torch.distributed.nn.functional.all_reduce, which is deprecated (warning on every call)
    @staticmethod
    def forward(ctx: object, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)  # every process's loss depends on the sum: their gradients add up
        return grad


def differentiable_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over the process group, differentiable: its gradient is summed over it too."""
    return _AllReduceSum.apply(tensor)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
