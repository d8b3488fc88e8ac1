"""BatchNorm over the global batch when several processes train (``runtime.sync_bn``).

On GPUs this is torch's ``SyncBatchNorm``. Its training forward refuses CPU tensors (``batch_norm_stats`` has
no CPU kernel), so on CPU (gloo) the converted layers are :class:`GlooSyncBatchNorm`: the same module and
state dict, whose CPU training forward reduces the batch statistics with autograd-aware all-reduces.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn as nn

from .distributed import Dist


def wants_sync_bn(setting: str | bool, world: int, is_points: bool) -> bool:
    """``runtime.sync_bn`` resolved: ``auto`` syncs point models whenever more than one process trains (their
    BatchNorm would otherwise see batch / processes samples; the official point code ran one process)."""
    if world <= 1:
        return False
    return is_points if setting == "auto" else bool(setting)


def convert_sync_bn(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every BatchNorm layer synchronised across the process group (CPU: gloo-capable)."""
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if device.type == "cpu":
        for module in model.modules():
            if type(module) is nn.SyncBatchNorm:
                module.__class__ = GlooSyncBatchNorm  # a subclass adding no state: only forward differs
    return model


class GlooSyncBatchNorm(nn.SyncBatchNorm):
    """``SyncBatchNorm`` that also trains on CPU tensors: the global mean, then the global biased variance
    (two passes, as ``F.batch_norm`` computes them), summed across processes; the backward sums the
    gradients of those sums across processes too (``torch.distributed.nn.functional.all_reduce``), as
    torch's CUDA ``SyncBatchNorm`` does. Anything but CPU training defers to ``SyncBatchNorm``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.device.type != "cpu" or not (self.training and dist.is_initialized()):
            return super().forward(input)
        self._check_input_dim(input)
        group = self.process_group or dist.group.WORLD
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.float()
        count = dist_fn.all_reduce(x.new_tensor([x.numel() / x.shape[1]]), group=group)
        mean = dist_fn.all_reduce(x.sum(dims), group=group) / count
        centred = x - mean.view(shape)
        var = dist_fn.all_reduce((centred * centred).sum(dims), group=group) / count
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * count / (count - 1))
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean, momentum)
        self.running_var.lerp_(unbiased_var, momentum)


def distributed_record(dist_: Dist, batch_size: int, sync_bn: bool) -> dict[str, int | bool]:
    """How a run trained, for metrics.json: processes, per-process batch, whether BatchNorm was synced."""
    return {"processes": dist_.world, "batch_per_process": batch_size // dist_.world, "sync_bn": sync_bn}
