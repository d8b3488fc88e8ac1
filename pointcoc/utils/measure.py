"""Measuring steps: wall times, peak memory (CUDA and resident), other processes' CPU use, the machine.

Shared by ``main.py bench`` (:mod:`benchmarks.model_bench`), the scripts in ``benchmarks/`` and the tables'
cost column. Times are wall-clock seconds per step with the device synchronised after every step; several
steps that are compared run interleaved (:func:`interleaved_times`) so that background load drifting over
the run hits them alike. Knows nothing of models: a step is any callable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .amp import autocast

PRECISIONS = ("fp32", "bf16", "fp16")
MIB = 1024.0 * 1024.0
PROC_STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
PROC_STAT = Path("/proc/stat")
# glibc's mmap threshold, fixed: otherwise it grows once big blocks are freed and later tensors come from a
# heap whose freed chunks stay resident, and peak RSS then scatters by tens of percent between runs. With
# it fixed, every tensor buffer is its own mapping, unmapped when freed, so RSS tracks live tensors.
MMAP_THRESHOLD = 64 * 1024
MMAP_THRESHOLD_ENV = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}  # the same, for a child process
# For timing, the opposite: the heap a long run settles in. glibc raises its mmap threshold (to at most 32 MiB
# on 64-bit) and its trim threshold (to twice that) as big blocks are freed; until then every buffer above
# 128 KiB is a fresh mapping, page-faulted in on every step. Which rows ran earlier in a process would
# otherwise decide whose steps pay those faults (measured: the official Cluster at coc_tiny stage 2 takes
# 27 ms alone and 21-22 ms after the stage-0 row, ours 10.7 ms either way).
STEADY_MMAP_THRESHOLD = 32 * 1024 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers, from glibc's malloc.h
_DEFAULT_TRIM_THRESHOLD = 128 * 1024


def amp_of(precision: str) -> str | None:
    """The autocast name (``train.amp``) of a precision: None for fp32, else the precision itself."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    return None if precision == "fp32" else precision


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def machine_info(device: torch.device | str = "cpu") -> dict[str, object]:
    """CPU model, CPU count, torch threads and how they wait, torch/Python versions and, on CUDA, the GPU.

    The wait policy is part of the figure: waking a passively waiting OpenMP thread costs tens of
    microseconds on a virtual machine, paid by every parallel op (measured on 2 vCPUs: a ``Cluster``
    training step of ~10 ms 1.2-1.4x slower than with spinning threads; whole-model steps within noise).
    """
    device = torch.device(device)
    info: dict[str, object] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def describe_machine(info: dict[str, object]) -> str:
    text = (
        f"{info['cpu_model']}, {info['cpu_count']} CPUs, {info['threads']} torch threads "
        f"(OMP_WAIT_POLICY {info['omp_wait_policy']}); "
        f"torch {info['torch']}, Python {info['python']}"
    )
    return text + (f"; GPU {info['gpu']} (CUDA {info['cuda']})" if "gpu" in info else "")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(
    steps: dict[str, Callable[[], object]], warmup: int, repeats: int, device: torch.device | None = None
) -> dict[str, list[float]]:
    """Seconds per call of each step: ``warmup`` untimed calls each, then ``repeats`` timed ones.

    The steps alternate, in reverse order every other repeat, so that drifting background load and
    caches warmed by the previous step favour none of them.
    """
    device = device or torch.device("cpu")
    names = list(steps)
    for _ in range(warmup):
        for name in names:
            steps[name]()
            synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            synchronize(device)
            start = time.perf_counter()
            steps[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def make_train_step(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    precision: str = "fp32",
) -> Callable[[], torch.Tensor]:
    """``zero_grad`` + forward (under autocast unless fp32) + cross-entropy + backward + optimiser step.

    fp16 scales the loss with a GradScaler, as fp16 training must; the step returns the loss tensor
    without reading it, so that no host sync is added to the step.
    """
    device = inputs.device
    amp = amp_of(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def step() -> torch.Tensor:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = F.cross_entropy(model(inputs).float(), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()

    return step


def make_infer_step(
    model: nn.Module, inputs: torch.Tensor, precision: str = "fp32"
) -> Callable[[], torch.Tensor]:
    """An eval-mode forward under ``torch.inference_mode`` (and autocast unless fp32)."""
    amp = amp_of(precision)

    def step() -> torch.Tensor:
        model.eval()
        with torch.inference_mode(), autocast(inputs.device, amp):
            return model(inputs)

    return step


def proc_status_bytes(field: str) -> int:
    """A memory field of ``/proc/self/status`` (e.g. VmRSS, VmHWM) in bytes."""
    for line in PROC_STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # the kernel reports kB
    raise RuntimeError(f"{field} missing from {PROC_STATUS}")


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None


def _set_heap_thresholds(mmap_threshold: int, trim_threshold: int) -> bool:
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )


def fix_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold in this process for measuring memory (see ``MMAP_THRESHOLD``; the trim
    threshold at its default); False where not glibc."""
    return _set_heap_thresholds(MMAP_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)


def steady_heap() -> bool:
    """Put glibc's heap in this process in the state a long run settles in, for timing (see
    ``STEADY_MMAP_THRESHOLD``): buffers up to 32 MiB are reused from the heap, not mapped anew per step.
    False where not glibc."""
    return _set_heap_thresholds(STEADY_MMAP_THRESHOLD, 2 * STEADY_MMAP_THRESHOLD)


def rss_growth(step: Callable[[], object]) -> float | None:
    """Peak resident memory during one call of ``step`` minus the resident memory just before, in bytes.

    Reads VmHWM after resetting it through ``/proc/self/clear_refs``; None where that is unavailable
    (not Linux). Meaningful with a fixed mmap threshold: :func:`fix_mmap_threshold` or ``MMAP_THRESHOLD_ENV``.
    """
    if not (CLEAR_REFS.exists() and PROC_STATUS.exists()):
        return None
    gc.collect()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        # Free heap chunks left by earlier work stay resident and would be reused without adding to RSS;
        # trimming hands their pages back, so reusing them during the step counts again.
        libc.malloc_trim(0)
    try:
        CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        return None
    before = proc_status_bytes("VmRSS")
    step()
    return float(proc_status_bytes("VmHWM") - before)


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes held by distinct tensor storages (shared storages counted once)."""
    seen, total = set(), 0
    for t in tensors:
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def step_peak(
    step: Callable[[], object], device: torch.device, alive: Iterable[torch.Tensor]
) -> float | None:
    """Peak memory in bytes while ``step`` runs once, with the tensors ``alive`` before it counted in.

    On CUDA ``torch.cuda.max_memory_allocated`` over the step (which sees ``alive`` itself); on CPU the same
    quantity measured from outside: the bytes of ``alive`` plus the step's peak RSS growth (None where that
    cannot be read). Call :func:`fix_mmap_threshold` first on CPU.
    """
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        synchronize(device)
        return float(torch.cuda.max_memory_allocated(device))
    held = tensor_bytes(alive)
    growth = rss_growth(step)
    return None if growth is None else held + growth


def _busy_cpu_seconds() -> float:
    """CPU time all processes have spent busy since boot, from the first line of /proc/stat."""
    ticks = [int(x) for x in PROC_STAT.read_text().splitlines()[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OthersCpuMeter:
    """Share of all CPUs that other processes kept busy between ``__init__`` and :meth:`read`.

    Unlike the load average, which trails by minutes, this covers exactly the measured run.
    """

    def __init__(self) -> None:
        self.available = PROC_STAT.exists()
        if self.available:
            self.start = (time.monotonic(), _busy_cpu_seconds(), _own_cpu_seconds())

    def read(self) -> float | None:
        if not self.available:
            return None
        wall0, busy0, own0 = self.start
        wall = time.monotonic() - wall0
        others = (_busy_cpu_seconds() - busy0) - (_own_cpu_seconds() - own0)
        return min(max(others / (wall * (os.cpu_count() or 1)), 0.0), 1.0)
