"""When a computation will be differentiated (the switch between the training and evaluation paths), and
when a backward may overwrite what its forward saved."""

from __future__ import annotations

import torch


def grad_needed(*tensors: torch.Tensor) -> bool:
    """Whether autograd will record an op on ``tensors`` (grad mode on and one of them requires grad).

    The operator's dense path and the point models' shorter training routes are taken on this test; the
    evaluation path, whose products are the counted (official) MACs, otherwise.
    """
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def saved_tensors_used_once() -> bool:
    """Whether the backward running now frees the graph after it (no ``retain_graph``), as AOTAutograd asks
    before donating saved buffers: a function's backward may then write over tensors its forward created
    and saved but never returned. Call it inside ``backward``; False where torch cannot tell."""
    keep_graph = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    return keep_graph is not None and not keep_graph()


class NestedContext:
    """Autograd's context for an autograd function's ``forward``/``backward`` run inside another one (a block
    whose backward is written out around its parts, e.g. the cluster mixers' training routes): what the
    part's forward keeps for its backward, and the flags that backward reads."""

    saved_tensors: tuple[torch.Tensor, ...]

    def save_for_backward(self, *tensors: torch.Tensor) -> None:
        self.saved_tensors = tensors

    def mark_non_differentiable(self, *tensors: torch.Tensor) -> None:
        """Nothing to mark: no graph is recorded inside another function's forward."""
