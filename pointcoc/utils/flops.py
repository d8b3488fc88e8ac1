"""Multiply-accumulate counting with ``torch.utils.flop_counter`` (what the official numbers used)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

COUNTED = (
    "matrix products and convolutions only (torch.utils.flop_counter: mm, addmm, bmm, convolution); "
    "elementwise ops, normalisation, pooling, activations, FPS and kNN top-k are not counted"
)


def count_macs(model: nn.Module, example: torch.Tensor) -> tuple[int, dict[str, int]]:
    """MACs of one eval-mode forward of ``example``, in total and by aten op."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
    by_op = {str(op): flops // 2 for op, flops in counter.get_flop_counts()["Global"].items()}
    return counter.get_total_flops() // 2, by_op
