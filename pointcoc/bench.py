"""Measuring whole models: step times, throughput, peak memory and the machine they ran on.

Used by ``python main.py bench`` and by the scripts in ``benchmarks/``. Times are wall-clock seconds per
step with the device synchronised after every step; several steps that are compared run interleaved
(:func:`interleaved_times`) so that background load drifting over the run hits them alike.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models import create_model, list_models
from .utils.amp import autocast
from .utils.flops import count_macs

PRECISIONS = ("fp32", "bf16", "fp16")


def amp_of(precision: str) -> str | None:
    """The engine's ``train.amp`` value for a bench precision (fp32: no autocast)."""
    return None if precision == "fp32" else precision


MIB = 1024.0 * 1024.0
PROC_STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
PROC_STAT = Path("/proc/stat")
# glibc's mmap threshold, fixed: otherwise it grows once big blocks are freed and later tensors come from a
# heap whose freed chunks stay resident, and peak RSS then scatters by tens of percent between runs. With
# it fixed, every tensor buffer is its own mapping, unmapped when freed, so RSS tracks live tensors.
MMAP_THRESHOLD = 64 * 1024
MMAP_THRESHOLD_ENV = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}  # the same, for a child process
_M_MMAP_THRESHOLD = -3  # mallopt parameter number, from glibc's malloc.h


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def machine_info(device: torch.device | str = "cpu") -> dict[str, object]:
    """CPU model, CPU count, torch threads, torch/Python versions and, on CUDA, the GPU."""
    device = torch.device(device)
    info: dict[str, object] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def describe_machine(info: dict[str, object]) -> str:
    text = (
        f"{info['cpu_model']}, {info['cpu_count']} CPUs, {info['threads']} torch threads; "
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


def fix_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold in this process (see ``MMAP_THRESHOLD``); False where not glibc."""
    libc = _libc()
    return (
        libc is not None
        and hasattr(libc, "mallopt")
        and bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    )


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


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes held by distinct tensor storages (shared storages counted once)."""
    seen, total = set(), 0
    for t in tensors:
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def is_point_model(name: str) -> bool:
    """Image models (``[B, 3, H, W]``) form the context_cluster family; the others take ``[B, N, 3]``."""
    return name not in list_models(family="context_cluster")


def default_optimizer(model: nn.Module, point_model: bool) -> torch.optim.Optimizer:
    """The official recipes' optimiser kind: SGD with momentum for point models, AdamW for image models."""
    if point_model:
        return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=2e-4)
    return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)


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
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def step() -> torch.Tensor:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp_of(precision)):
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

    def step() -> torch.Tensor:
        model.eval()
        with torch.inference_mode(), autocast(inputs.device, amp_of(precision)):
            return model(inputs)

    return step


@dataclass
class ModelBench:
    """What ``main.py bench`` measures for one model, batch, device and precision."""

    model: str
    input_shape: list[int]
    batch: int
    device: str
    precision: str
    compiled: bool
    channels_last: bool
    params: int
    macs: int  # per sample, fp32 eval forward, as ``main.py info`` counts them
    warmup: int
    repeats: int
    infer_times: list[float]
    train_times: list[float]
    infer_peak: float | None  # bytes; None where it cannot be measured
    train_peak: float | None
    machine: dict[str, object]

    def throughput(self, mode: str) -> float:
        """Samples per second from the median step time of ``mode`` ("infer" or "train")."""
        return self.batch / statistics.median(self.infer_times if mode == "infer" else self.train_times)


def _check_bench_args(
    name: str, batch: int, device: torch.device, precision: str, points: int | None, size: int | None,
    channels_last: bool,
) -> None:  # fmt: skip
    if name not in list_models():
        raise ValueError(f"unknown model {name!r}; `python main.py list` names them all")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {str(device)!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch.cuda.is_available() is False")
    if is_point_model(name) and (size is not None or channels_last):
        raise ValueError(f"size and channels_last apply to image models; {name} is a point model")
    if not is_point_model(name) and points is not None:
        raise ValueError(f"points applies to point models; {name} is an image model")


def benchmark_model(
    name: str,
    batch: int,
    device: str = "cpu",
    precision: str = "fp32",
    compile: bool = False,
    channels_last: bool = False,
    points: int | None = None,
    size: int | None = None,
    warmup: int = 3,
    repeats: int = 10,
) -> ModelBench:
    """Params, MACs, inference and training-step times and peak memories of a registered model.

    ``points`` (point models) sets ``num_points``, ``size`` (image models) the image side; ``channels_last``
    (image models) stores maps and weights NHWC. Peak memory on CUDA is ``torch.cuda.max_memory_allocated``
    over one step; on CPU it is the same quantity measured from outside: the bytes of the tensors alive
    before the step (weights, optimiser state, inputs) plus the step's peak RSS growth.
    """
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}") from None
    _check_bench_args(name, batch, dev, precision, points, size, channels_last)
    if warmup < 1 or repeats < 1:
        raise ValueError(f"warmup and repeats must be >= 1, got {warmup} and {repeats}")
    if dev.type == "cpu":
        fix_mmap_threshold()
    point = is_point_model(name)
    model = create_model(name, **({"num_points": points} if point and points else {}))
    example = model.example_input(batch) if point else model.example_input(batch, size=size or 224)
    params = sum(p.numel() for p in model.parameters())
    macs, _ = count_macs(model, example[:1])
    model = model.to(dev)
    inputs = example.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, model.num_classes, (batch,), device=dev)
    optimizer = default_optimizer(model, point)
    runner = torch.compile(model) if compile else model
    steps = {
        "infer": make_infer_step(runner, inputs, precision),
        "train": make_train_step(runner, inputs, labels, optimizer, precision),
    }
    times = interleaved_times(steps, warmup, repeats, dev)
    peaks = {}
    for mode, step in steps.items():
        optimizer.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            step()
            synchronize(dev)
            peaks[mode] = float(torch.cuda.max_memory_allocated(dev))
        else:
            state = [t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
            alive = tensor_bytes([*model.parameters(), *model.buffers(), *state, inputs, labels])
            growth = rss_growth(step)
            peaks[mode] = None if growth is None else alive + growth
    return ModelBench(
        model=name,
        input_shape=list(inputs.shape),
        batch=batch,
        device=str(dev),
        precision=precision,
        compiled=compile,
        channels_last=channels_last,
        params=params,
        macs=macs,
        warmup=warmup,
        repeats=repeats,
        infer_times=times["infer"],
        train_times=times["train"],
        infer_peak=peaks["infer"],
        train_peak=peaks["train"],
        machine=machine_info(dev),
    )


def format_report(r: ModelBench) -> str:
    """Lines ``key  value`` (the key padded to 14 characters), one per measured quantity."""

    def mode_line(mode: str, times: list[float]) -> str:
        return (
            f"{r.throughput(mode):,.1f} samples/s (median {statistics.median(times) * 1e3:.1f} ms/step, "
            f"min {min(times) * 1e3:.1f} ms)"
        )

    def peak(b: float | None) -> str:
        return "n/a" if b is None else f"{b / MIB:,.1f} MiB"

    memory_kind = "max_memory_allocated" if r.device.startswith("cuda") else "live tensors + peak RSS growth"
    rows = [
        ("model", r.model),
        ("input", f"{r.input_shape} (batch {r.batch})"),
        ("device", r.device),
        ("precision", r.precision),
        ("compile", "on" if r.compiled else "off"),
        ("channels_last", "on" if r.channels_last else "off"),
        ("machine", describe_machine(r.machine)),
        ("parameters", f"{r.params:,} ({r.params / 1e6:.2f} M)"),
        ("MACs", f"{r.macs:,} ({r.macs / 1e9:.2f} G per sample)"),
        ("timing", f"{r.warmup} warm-up + {r.repeats} timed steps per mode, interleaved, synchronised"),
        ("infer", mode_line("infer", r.infer_times)),
        ("train", mode_line("train", r.train_times) + " [forward + backward + optimizer step]"),
        ("peak_infer", f"{peak(r.infer_peak)} ({memory_kind})"),
        ("peak_train", f"{peak(r.train_peak)} ({memory_kind})"),
    ]
    return "\n".join(f"{key:<14} {value}" for key, value in rows)
