"""Optional pytorch3d acceleration, picked up automatically when it imports."""

from __future__ import annotations

import importlib
from functools import lru_cache
from types import ModuleType

BACKENDS = ("auto", "torch", "pytorch3d")


@lru_cache(maxsize=1)
def pytorch3d_ops() -> ModuleType | None:
    try:
        return importlib.import_module("pytorch3d.ops")
    except Exception:  # ImportError, or a pytorch3d built against another torch (OSError/RuntimeError)
        return None


def use_pytorch3d(backend: str) -> bool:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return False
    available = pytorch3d_ops() is not None
    if backend == "pytorch3d" and not available:
        raise ValueError(
            "backend='pytorch3d' was requested but pytorch3d is not importable; use 'auto' or 'torch'"
        )
    return available
