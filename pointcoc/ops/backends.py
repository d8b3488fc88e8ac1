"""Which implementation an op runs: pure torch, pytorch3d when it imports, Triton FPS on CUDA.

``backend="auto"`` picks, for farthest point sampling, the Triton kernel for float32/float64 CUDA tensors
when triton imports (it reproduces the torch path's indices exactly, in one launch), else pytorch3d when
it imports, else pure torch; for kNN, pytorch3d when it imports (outside torch.compile), else pure
torch. Both optional packages are imported lazily, on first use, so the package imports without them.

Imports go one way: the ops import this module, this module imports the Triton kernel lazily, and the kernel
imports only :mod:`pointcoc.ops.constants`.
"""

from __future__ import annotations

import importlib
import os
from functools import lru_cache
from types import ModuleType

import torch

BACKENDS = ("auto", "torch", "pytorch3d", "triton")
# The Triton FPS kernel computes in the points' dtype; half precision would round differently from the
# torch path (whose sum accumulates in float32), so those clouds take the torch path.
TRITON_FPS_DTYPES = (torch.float32, torch.float64)


@lru_cache(maxsize=1)
def pytorch3d_ops() -> ModuleType | None:
    try:
        return importlib.import_module("pytorch3d.ops")
    except Exception:  # ImportError, or a pytorch3d built against another torch (OSError/RuntimeError)
        return None


@lru_cache(maxsize=1)
def triton_fps() -> ModuleType | None:
    """:mod:`pointcoc.ops.triton_fps`, or None where triton does not import."""
    try:
        return importlib.import_module("pointcoc.ops.triton_fps")
    except Exception:  # ImportError, or a triton that does not match the installed torch or driver
        return None


def triton_interpreting() -> bool:
    """Whether Triton's CPU interpreter is on (it runs kernels on CPU tensors; tests use it)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _check_name(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def use_pytorch3d(backend: str) -> bool:
    """For kNN: whether to call pytorch3d."""
    _check_name(backend)
    if backend == "triton":
        raise ValueError(
            "backend='triton' exists only for farthest_point_sample; use 'auto', 'torch' or 'pytorch3d'"
        )
    # Under torch.compile, "auto" keeps kNN in the graph: the torch path compiles, while pytorch3d's
    # extension call would break the graph (and dynamo would trace past the import cache).
    if backend == "torch" or (backend == "auto" and torch.compiler.is_compiling()):
        return False
    available = pytorch3d_ops() is not None
    if backend == "pytorch3d" and not available:
        raise ValueError(
            "backend='pytorch3d' was requested but pytorch3d is not importable; use 'auto' or 'torch'"
        )
    return available


def fps_backend(backend: str, points: torch.Tensor) -> str:
    """For farthest point sampling: ``"triton"``, ``"pytorch3d"`` or ``"torch"``."""
    _check_name(backend)
    if backend == "triton":
        if triton_fps() is None:
            raise ValueError(
                "backend='triton' was requested but triton is not importable; use 'auto' or 'torch'"
            )
        if points.device.type != "cuda" and not triton_interpreting():
            raise ValueError(
                "backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1), "
                f"got a {points.device.type} tensor"
            )
        if points.dtype not in TRITON_FPS_DTYPES:
            raise ValueError(f"backend='triton' takes float32 or float64 points, got {points.dtype}")
        return "triton"
    if (
        backend == "auto"
        and points.device.type == "cuda"
        and points.dtype in TRITON_FPS_DTYPES
        and triton_fps() is not None
    ):
        return "triton"
    return "pytorch3d" if use_pytorch3d(backend) else "torch"
