"""The operator's compiled CPU kernel (``csrc/similarity.cpp``): its similarity backward in one pass per set.

Built on first use by torch's extension builder (a C++ compiler and ninja, as for any PyTorch C++ extension;
cached in ``$TORCH_EXTENSIONS_DIR``, ~30 s once). With ``POINTCOC_NATIVE=0``, or where the build fails (said
in one warning), the operator runs the same math as ATen ops (:mod:`pointcoc.cluster.op`).
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType

import torch

ENV = "POINTCOC_NATIVE"
SOURCE = Path(__file__).with_name("csrc") / "similarity.cpp"
NAME = "pointcoc_similarity"
# -fopenmp: at::parallel_for runs on torch's own OpenMP threads (its libgomp, already loaded) only when the
# extension is built with OpenMP; without it the loop runs on one thread.
CFLAGS = ["-O3", "-fopenmp"]
LDFLAGS = ["-fopenmp"]


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0"


@functools.cache
def kernels() -> ModuleType | None:
    """The built extension (``similarity_backward``), or ``None`` (disabled, or the build failed: warned
    once): :func:`build`, once per process."""
    return build()


def build() -> ModuleType | None:
    """Builds (or finds built) and loads the extension; ``None`` when disabled or when the build fails, with
    one warning naming the first line of the error."""
    if not enabled():
        return None
    try:
        from torch.utils.cpp_extension import load

        if _needs_build():
            print(
                f"pointcoc: building the cluster operator's CPU kernel (once, ~30 s; {ENV}=0 skips it)",
                file=sys.stderr,
            )
        return load(
            name=NAME, sources=[str(SOURCE)], extra_cflags=CFLAGS, extra_ldflags=LDFLAGS, verbose=False
        )
    except Exception as error:  # no compiler, no ninja, a failed build: the ATen code does the same
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        warnings.warn(
            f"pointcoc: the operator's CPU kernel could not be built ({reason}); running its ATen code "
            f"(slower on CPU). Set {ENV}=0 to skip the build.",
            stacklevel=2,
        )
        return None


def _needs_build() -> bool:
    """Whether ``load`` will compile (no library yet, or one older than the source), to say so first; the
    build directory is torch's private naming, so any doubt reads as no."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        library = Path(_get_build_directory(NAME, verbose=False), f"{NAME}.so")
        return not library.exists() or library.stat().st_mtime < SOURCE.stat().st_mtime
    except Exception:
        return False


def applies(points: torch.Tensor) -> bool:
    """Whether the kernel takes these points: float32/float64 on CPU, eager (compilation traces the ATen
    code), and the kernel built."""
    return (
        points.device.type == "cpu"
        and points.dtype in (torch.float32, torch.float64)
        and not torch.compiler.is_compiling()
        and kernels() is not None
    )
