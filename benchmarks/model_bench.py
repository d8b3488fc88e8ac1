"""Whole-model benchmark: params, MACs, inference and training-step throughput, peak memory.

What ``python main.py bench`` prints (:func:`benchmark_model`, :func:`format_report`); the GPU suite
reuses it. The measuring itself (timers, peak memory, the machine) is :mod:`pointcoc.utils.measure`; this
module only builds a registered model, asks its ``model_cfg`` what input it takes, and reports.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
import torch.nn as nn

from pointcoc.engine.build import compile_model
from pointcoc.models import create_model, list_models
from pointcoc.utils.flops import count_macs
from pointcoc.utils.measure import (
    MIB,
    PRECISIONS,
    describe_machine,
    fix_mmap_threshold,
    interleaved_times,
    machine_info,
    make_infer_step,
    make_train_step,
    steady_heap,
    step_peak,
)


def default_optimizer(model: nn.Module, points: bool | None = None) -> torch.optim.Optimizer:
    """The official recipes' optimiser kind: SGD with momentum for point models, AdamW for image models.

    ``points``: the model's kind, for modules that declare none (the official ones); default: its
    ``model_cfg``."""
    if model.model_cfg.is_points if points is None else points:
        return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=2e-4)
    return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)


def declared_kind(name: str) -> str:
    """The input kind (``"points"`` or ``"image"``) the registered model ``name`` declares in its
    ``model_cfg`` (built once with its defaults to ask)."""
    return create_model(name).model_cfg.input_kind


def example_batch(model: nn.Module, batch: int, size: int | None = None) -> torch.Tensor:
    """A random input batch of the model's declared kind: its ``num_points``, or ``size`` (default: the
    declared image size) for image models."""
    cfg = model.model_cfg
    return model.example_input(batch) if cfg.is_points else model.example_input(batch, size or cfg.image_size)


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


def _check_run_args(
    name: str, batch: int, device: torch.device, precision: str, warmup: int, repeats: int
) -> None:
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
    if warmup < 1 or repeats < 1:
        raise ValueError(f"warmup and repeats must be >= 1, got {warmup} and {repeats}")


def _build(name: str, points: int | None, size: int | None, channels_last: bool) -> nn.Module:
    """The registered model with ``points`` applied, once its ``model_cfg`` says which input options apply."""
    model = create_model(name)
    cfg = model.model_cfg
    if cfg.is_points and (size is not None or channels_last):
        raise ValueError(f"size and channels_last apply to image models; {name} is a point model")
    if not cfg.is_points and points is not None:
        raise ValueError(f"points applies to point models; {name} is an image model")
    return model if points in (None, cfg.num_points) else create_model(name, num_points=points)


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
    (image models) stores maps and weights NHWC. Peak memory: :func:`pointcoc.utils.measure.step_peak`
    (on CPU: the tensors alive before the step, i.e. weights, optimiser state and inputs, plus the step's
    peak RSS growth).
    """
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}") from None
    _check_run_args(name, batch, dev, precision, warmup, repeats)
    cpu = dev.type == "cpu"
    if cpu:  # peak memory first, each buffer its own mapping so that RSS tracks live tensors
        fix_mmap_threshold()
    model = _build(name, points, size, channels_last)
    example = example_batch(model, batch, size)
    params = sum(p.numel() for p in model.parameters())
    macs, _ = count_macs(model, example[:1])
    model = model.to(dev)
    inputs = example.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, model.num_classes, (batch,), device=dev)
    optimizer = default_optimizer(model)
    runner = compile_model(model) if compile else model
    steps = {
        "infer": make_infer_step(runner, inputs, precision),
        "train": make_train_step(runner, inputs, labels, optimizer, precision),
    }
    for step in steps.values():  # lazy initialisations (optimiser state, compilation) before the peaks
        step()
    peaks = {}
    for mode, step in steps.items():
        optimizer.zero_grad(set_to_none=True)
        state = [t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
        peaks[mode] = step_peak(step, dev, [*model.parameters(), *model.buffers(), *state, inputs, labels])
    if cpu:  # then the times, in the heap a long run settles in (buffers reused, not mapped anew per step)
        steady_heap()
    times = interleaved_times(steps, warmup, repeats, dev)
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
        (
            "timing",
            f"{r.warmup} warm-up + {r.repeats} timed steps per mode, interleaved, synchronised"
            + ("; glibc heap in its settled state" if r.device == "cpu" else ""),
        ),
        ("infer", mode_line("infer", r.infer_times)),
        ("train", mode_line("train", r.train_times) + " [forward + backward + optimizer step]"),
        ("peak_infer", f"{peak(r.infer_peak)} ({memory_kind})"),
        ("peak_train", f"{peak(r.train_peak)} ({memory_kind})"),
    ]
    return "\n".join(f"{key:<14} {value}" for key, value in rows)
