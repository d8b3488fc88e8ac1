"""When a computation will be differentiated: the switch between the training and evaluation paths."""

from __future__ import annotations

import torch


def grad_needed(*tensors: torch.Tensor) -> bool:
    """Whether autograd will record an op on ``tensors`` (grad mode on and one of them requires grad).

    The operator's dense path and the point models' shorter training routes are taken on this test; the
    evaluation path, whose products are the counted (official) MACs, otherwise.
    """
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
