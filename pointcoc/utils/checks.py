"""Argument validation that fails with one line naming the argument and what was expected."""

from __future__ import annotations

import torch


def check_point_set(name: str, x: torch.Tensor, dim: int | None = None) -> None:
    """Require a batched point set ``[B, N, D]`` (``D == dim`` when given)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [B, N, D], got {type(x).__name__}")
    expected = f"[B, N, {dim}]" if dim is not None else "[B, N, D]"
    if x.dim() != 3 or (dim is not None and x.shape[-1] != dim):
        raise ValueError(f"{name} must have shape {expected}, got {list(x.shape)}")


def check_finite(name: str, x: torch.Tensor) -> None:
    """Reject NaN/Inf early: FPS and kNN silently return garbage indices on them.

    On accelerators the check is asynchronous (no host sync in the training step): a non-finite value
    then surfaces as a device-side assertion at the next synchronisation instead of a ValueError here.
    """
    if x.device.type != "cpu":
        torch._assert_async(torch.isfinite(x).all(), f"{name} contains non-finite values (NaN or Inf)")
        return
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"{name} contains {bad} non-finite values (NaN or Inf); clean or drop those points first"
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


def check_input_layout(input_layout: str) -> None:
    if input_layout not in ("BNC", "BCN"):
        raise ValueError(f"input_layout must be 'BNC' ([B, N, 3]) or 'BCN' ([B, 3, N]), got {input_layout!r}")
