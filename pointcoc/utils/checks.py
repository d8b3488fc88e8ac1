"""Argument validation that fails with one line naming the argument and what was expected."""

from __future__ import annotations

from collections.abc import Callable

import torch


def check_point_set(name: str, x: torch.Tensor, dim: int | None = None) -> None:
    """Require a batched point set ``[B, N, D]`` (``D == dim`` when given)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [B, N, D], got {type(x).__name__}")
    expected = f"[B, N, {dim}]" if dim is not None else "[B, N, D]"
    if x.dim() != 3 or (dim is not None and x.shape[-1] != dim):
        raise ValueError(f"{name} must have shape {expected}, got {list(x.shape)}")


def check_on_device(ok: torch.Tensor, message: str, detail: Callable[[], str] | None = None) -> None:
    """Require the 0-d bool tensor ``ok``: a ``ValueError`` (``detail()`` if given, else ``message``) on CPU.

    On accelerators, and anywhere under ``torch.compile``, the check is an asynchronous device assertion
    instead: no host sync in the training step and no graph break; a failure then surfaces at the next
    synchronisation with ``message``.
    """
    if ok.device.type != "cpu" or torch.compiler.is_compiling():
        torch._assert_async(ok, message)
    elif not bool(ok):
        raise ValueError(detail() if detail is not None else message)


def check_finite(name: str, x: torch.Tensor) -> None:
    """Reject NaN/Inf early: FPS and kNN silently return garbage indices on them."""
    finite = torch.isfinite(x)
    check_on_device(
        finite.all(),
        f"{name} contains non-finite values (NaN or Inf)",
        lambda: (
            f"{name} contains {int((~finite).sum())} non-finite values (NaN or Inf); clean or drop "
            "those points first"
        ),
    )


def check_count(name: str, wanted: int, available: int, what: str) -> None:
    """Require ``wanted <= available`` for sampling or neighbour counts."""
    if wanted < 1:
        raise ValueError(f"{name} must be >= 1, got {wanted}")
    if wanted > available:
        raise ValueError(f"{name}={wanted} exceeds the {available} {what} available")


def channels_last_xyz(x: torch.Tensor, input_layout: str) -> torch.Tensor:
    """A point model's input as ``[B, N, 3]``; ``input_layout="BCN"`` takes the official ``[B, 3, N]``."""
    expected = "[B, 3, N]" if input_layout == "BCN" else "[B, N, 3]"
    axis = 1 if input_layout == "BCN" else 2
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[axis] != 3:
        got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"xyz must have shape {expected} (input_layout={input_layout!r}), got {got}")
    return x.transpose(1, 2) if input_layout == "BCN" else x


def example_xyz(batch_size: int, num_points: int, input_layout: str) -> torch.Tensor:
    """A random cloud in [-1, 1]^3 in a point model's input layout (FLOP counting, benchmarks, tracing)."""
    xyz = torch.rand(batch_size, num_points, 3) * 2 - 1
    return xyz.transpose(1, 2).contiguous() if input_layout == "BCN" else xyz


def check_input_layout(input_layout: str) -> None:
    if input_layout not in ("BNC", "BCN"):
        raise ValueError(f"input_layout must be 'BNC' ([B, N, 3]) or 'BCN' ([B, 3, N]), got {input_layout!r}")
