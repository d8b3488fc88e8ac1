"""BatchNorm over the global batch when several processes train (``runtime.sync_bn``).

On GPUs this is torch's ``SyncBatchNorm``. torch has no CPU version (its training forward refuses CPU tensors,
``batch_norm_stats`` has no CPU kernel, and DDP refuses ``SyncBatchNorm`` layers in a CPU module), so on CPU
(gloo) every BatchNorm layer becomes a :class:`GlooSyncBatchNorm`: same parameters and state dict, batch
statistics reduced across processes with autograd-aware all-reduces.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from .distributed import Dist, differentiable_sum


def wants_sync_bn(setting: str | bool, world: int, is_points: bool) -> bool:
    """``runtime.sync_bn`` resolved: ``auto`` syncs point models whenever more than one process trains (their
    BatchNorm would otherwise see batch / processes samples; the official point code ran one process)."""
    if world <= 1:
        return False
    return is_points if setting == "auto" else bool(setting)


def convert_sync_bn(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every BatchNorm layer synchronised across the process group: torch's ``SyncBatchNorm``
    on GPUs, :class:`GlooSyncBatchNorm` on CPU."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if isinstance(model, _BatchNorm):
        synced = GlooSyncBatchNorm(
            model.num_features, model.eps, model.momentum, model.affine, model.track_running_stats
        )
        # the layer's own parameters and buffers (their dtype and device), as torch's conversion keeps them
        for name, tensor in [*model.named_parameters(recurse=False), *model.named_buffers(recurse=False)]:
            setattr(synced, name, tensor)
        return synced.train(model.training)
    for name, child in model.named_children():
        model.add_module(name, convert_sync_bn(child, device))
    return model


class GlooSyncBatchNorm(_BatchNorm):
    """BatchNorm (any input ``[B, C, *]``) whose training statistics are those of the global batch on CPU
    processes: the global mean, then the global biased variance (two passes, as ``F.batch_norm`` computes
    them), each summed across processes; the backward sums the gradients of those sums across processes too
    (:func:`differentiable_sum`), as torch's CUDA ``SyncBatchNorm`` does. Without a
    process group, and in eval mode, it is plain BatchNorm."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input [B, C, *], got {input.dim()}D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.to(torch.promote_types(input.dtype, torch.float32))  # bf16/fp16 statistics in float32
        count = differentiable_sum(x.new_tensor([x.numel() / x.shape[1]]))
        mean = differentiable_sum(x.sum(dims)) / count
        centred = x - mean.view(shape)
        var = differentiable_sum((centred * centred).sum(dims)) / count
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
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), momentum)


def distributed_record(dist_: Dist, batch_size: int, sync_bn: bool) -> dict[str, int | bool]:
    """How a run trained, for metrics.json: processes, per-process batch, whether BatchNorm was synced."""
    return {"processes": dist_.world, "batch_per_process": batch_size // dist_.world, "sync_bn": sync_bn}
