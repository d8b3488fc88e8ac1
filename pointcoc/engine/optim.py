"""Optimiser and learning-rate schedule from the ``train`` section of a config."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from .config import TrainConfig

_NO_DECAY_NAMES = ("sim_alpha", "sim_beta")  # the clustering similarity's scale and shift
# "all": every parameter decays, as torch.optim.SGD(net.parameters(), weight_decay=...) in the official
# point scripts; "no_norm_bias": weight matrices/kernels only (timm's filter_bias_and_bn, the image recipe).
WEIGHT_DECAY_SCOPES = ("all", "no_norm_bias")


def param_groups(model: nn.Module, weight_decay: float, scope: str = "no_norm_bias") -> list[dict[str, Any]]:
    """Optimiser groups for ``train.weight_decay_scope``: ``"all"`` decays every trainable parameter,
    ``"no_norm_bias"`` none of the norms, biases, layer scales or the similarity's alpha/beta."""
    if scope not in WEIGHT_DECAY_SCOPES:
        raise ValueError(f"train.weight_decay_scope must be one of {WEIGHT_DECAY_SCOPES}, got {scope!r}")
    if scope == "all":
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay, no_decay = [], []
    norm_params = {
        id(p)
        for m in model.modules()
        if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))
        for p in m.parameters(recurse=False)
    }
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or id(p) in norm_params or name.rsplit(".", 1)[-1] in _NO_DECAY_NAMES
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def base_lr(train: TrainConfig) -> float:
    ref = train.lr_reference_batch
    return train.lr * (train.batch_size / ref if ref else 1.0)


def build_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """SGD or AdamW (``train.optimizer``, checked when the config was loaded)."""
    groups = param_groups(model, train.weight_decay, train.weight_decay_scope)
    if train.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=base_lr(train), momentum=train.momentum, nesterov=train.nesterov)
    return torch.optim.AdamW(groups, lr=base_lr(train), betas=train.betas)


def total_epochs(train: TrainConfig) -> int:
    """Epochs a run trains: the schedule's ``epochs`` plus ``cooldown_epochs`` at ``min_lr`` after it
    (timm's ``--cooldown-epochs``, 10 in the official ImageNet recipe)."""
    return train.epochs + train.cooldown_epochs


def build_scheduler(
    optimizer: torch.optim.Optimizer, train: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule: linear warm-up from ``warmup_lr``, then cosine from the base lr to ``min_lr``
    over ``epochs``; any step after that (the cooldown epochs of :func:`total_epochs`) stays at ``min_lr``."""
    lr, min_lr, warm_lr = base_lr(train), train.min_lr, train.warmup_lr
    if min_lr > lr:
        raise ValueError(f"train.min_lr ({min_lr:g}) is above the base lr ({lr:g}); lower train.min_lr")
    warmup = int(round(train.warmup_epochs * steps_per_epoch))
    total = max(train.epochs * steps_per_epoch, 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (warm_lr + (lr - warm_lr) * step / warmup) / lr
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return (min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))) / lr

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
