"""Autocast by name (``None``, ``"bf16"``, ``"fp16"``): one helper for training, evaluation, benchmarks."""

from __future__ import annotations

import contextlib

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    if amp is None:
        return contextlib.nullcontext()
    if amp not in AMP_DTYPES:
        raise ValueError(f"train.amp must be null, 'bf16' or 'fp16', got {amp!r}")
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp])
