"""Naive vs fast context-cluster operator: forward+backward time and peak extra memory.

Run from the repository root::

    python -m benchmarks.cluster_op [--threads 2] [--repeats 15] [--json results.json]

Times are medians over interleaved repeats in one process. Memory is measured in a fresh
subprocess per (implementation, shape) -- ``--child IMPL SHAPE`` -- as the step's peak resident
set (VmHWM, reset through ``/proc/self/clear_refs``) minus the resident set just before it, so it
counts ``out``, the input gradients and every temporary of forward and backward (the subprocesses
run with a fixed glibc mmap threshold, see ``pointcoc.utils.measure.MMAP_THRESHOLD``). Both operators are
first checked to give the same outputs and gradients. Results and the analysis: docs/operator_benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from pointcoc.cluster.op import ClusterResult, context_cluster
from pointcoc.cluster.reference import context_cluster_naive
from pointcoc.utils.measure import (
    CLEAR_REFS,
    MIB,
    MMAP_THRESHOLD_ENV,
    PROC_STATUS,
    OthersCpuMeter,
    interleaved_times,
    machine_info,
    rss_growth,
    steady_heap,
)

ClusterOp = Callable[..., ClusterResult]

IMPLS: dict[str, ClusterOp] = {"naive": context_cluster_naive, "fast": context_cluster}

SPEEDUP_TARGET = 3.0  # naive time / fast time must reach this
MEMORY_RATIO_TARGET = 0.5  # fast peak extra memory / naive peak extra memory must not exceed this

# Gradients of alpha/beta sum over every point, so they are compared relative to their magnitude.
OUT_TOLERANCE = 1e-4
GRAD_RELATIVE_TOLERANCE = 1e-4

REPO_ROOT = Path(__file__).resolve().parents[1]
BUSY_WARNING = 0.1  # fraction of all CPUs busy with other processes above which times are suspect


@dataclass(frozen=True)
class Shape:
    label: str
    sets: int  # B': batch * heads * regions, all folded into the operator's batch
    points: int  # N per set
    centers: int  # M per set
    dim: int  # D, similarity features
    value_dim: int  # E, values


SHAPES: dict[str, Shape] = {
    # 8 images x 4 heads x 8x8 regions of 7x7 points, 2x2 centers per region.
    "coc_tiny_s0": Shape("coc_tiny stage 0", sets=8 * 4 * 64, points=49, centers=4, dim=24, value_dim=24),
    # 8 images x 4 heads, one region of 56x56 points, 4x4 centers.
    "coc_tiny_plain_s0": Shape(
        "coc_tiny_plain stage 0", sets=8 * 4, points=56 * 56, centers=16, dim=24, value_dim=24
    ),
}


def make_inputs(shape: Shape, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Operator inputs (all requiring grad) and a fixed upstream gradient for ``out``."""
    g = torch.Generator().manual_seed(seed)
    b, n, m, d, e = shape.sets, shape.points, shape.centers, shape.dim, shape.value_dim
    inputs = [
        torch.randn(b, n, d, generator=g),
        torch.randn(b, n, e, generator=g),
        torch.randn(b, m, d, generator=g),
        torch.randn(b, m, e, generator=g),
        torch.ones(1),  # alpha and beta at the official initialisation
        torch.zeros(1),
    ]
    for t in inputs:
        t.requires_grad_(True)
    return inputs, torch.randn(b, n, e, generator=g)


def step(op: ClusterOp, inputs: list[torch.Tensor], grad_output: torch.Tensor) -> ClusterResult:
    """One forward+backward; gradients are freshly allocated so every step pays for them."""
    for t in inputs:
        t.grad = None
    result = op(*inputs)
    result.out.backward(grad_output)
    return result


def check_agreement(shape: Shape) -> dict[str, float | bool]:
    """Run both operators on the same inputs so the benchmark cannot compare different math."""
    inputs, grad_output = make_inputs(shape)
    outs, assignments, grads = {}, {}, {}
    for name, op in IMPLS.items():
        result = step(op, inputs, grad_output)
        outs[name] = result.out.detach()
        assignments[name] = result.assignment
        grads[name] = [t.grad.clone() for t in inputs]
    out_diff = (outs["naive"] - outs["fast"]).abs().max().item()
    grad_rel_diff = max(
        ((gn - gf).abs().max() / gn.abs().max().clamp_min(1.0)).item()
        for gn, gf in zip(grads["naive"], grads["fast"])
    )
    same_assignment = bool(torch.equal(assignments["naive"], assignments["fast"]))
    return {
        "out_max_abs_diff": out_diff,
        "grad_max_rel_diff": grad_rel_diff,
        "same_assignment": same_assignment,
        "ok": same_assignment and out_diff <= OUT_TOLERANCE and grad_rel_diff <= GRAD_RELATIVE_TOLERANCE,
    }


def time_steps(shape: Shape, warmup: int, repeats: int) -> dict[str, list[float]]:
    """Per-step wall times in ms, implementations interleaved
    (:func:`pointcoc.utils.measure.interleaved_times`)."""
    inputs, grad_output = make_inputs(shape)
    steps = {name: (lambda op=op: step(op, inputs, grad_output)) for name, op in IMPLS.items()}
    times = interleaved_times(steps, warmup, repeats)
    return {name: [t * 1e3 for t in ts] for name, ts in times.items()}


def child_memory(impl: str, shape_key: str) -> dict[str, object]:
    """Peak extra resident memory of one step, measured in this (fresh) process."""
    if not (CLEAR_REFS.exists() and PROC_STATUS.exists()):
        return {"available": False, "reason": "/proc/self/clear_refs or /proc/self/status missing"}
    op = IMPLS[impl]
    inputs, grad_output = make_inputs(SHAPES[shape_key])
    step(op, inputs, grad_output)  # warm-up: lazy initialisation, thread pools
    for t in inputs:
        t.grad = None
    growth = rss_growth(lambda: step(op, inputs, grad_output))
    if growth is None:
        return {"available": False, "reason": "cannot reset peak RSS through /proc/self/clear_refs"}
    return {"available": True, "peak_extra_mib": growth / MIB}


def measure_memory(impl: str, shape_key: str, threads: int) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.cluster_op", "--child", impl, shape_key]
        + ["--threads", str(threads)],
        cwd=REPO_ROOT,
        env={**os.environ, **MMAP_THRESHOLD_ENV},
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return {"available": False, "reason": f"child failed: {proc.stderr.strip().splitlines()[-1:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def run(args: argparse.Namespace) -> int:
    steady = steady_heap()
    info = machine_info()
    print(
        f"{info['cpu_model']}, {info['cpu_count']} CPUs, torch {info['torch']}, "
        f"{args.threads} threads, median of {args.repeats} after {args.warmup} warm-up"
        + (", glibc heap in its settled state" if steady else "")
    )
    # Other processes on the cores make OpenMP threads wait on each other, which slows the many small
    # ops of the fast operator far more than the few big ones of the naive one.
    others_cpu = OthersCpuMeter()
    report: dict[str, object] = {
        "machine": info,
        "threads": args.threads,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "targets": {"speedup_min": SPEEDUP_TARGET, "memory_ratio_max": MEMORY_RATIO_TARGET},
        "shapes": {},
    }
    for key, shape in SHAPES.items():
        check = check_agreement(shape)
        print(
            f"{shape.label}: max |out naive - out fast| = {check['out_max_abs_diff']:.2e}, "
            f"max relative grad diff = {check['grad_max_rel_diff']:.2e}, "
            f"same assignment: {check['same_assignment']}"
        )
        if not check["ok"]:
            print("the two implementations disagree; refusing to compare their speed", file=sys.stderr)
            return 1
        times = time_steps(shape, args.warmup, args.repeats)
        impls = {}
        for name in IMPLS:
            memory = measure_memory(name, key, args.threads)
            impls[name] = {"times_ms": times[name], "median_ms": statistics.median(times[name]), **memory}
        report["shapes"][key] = {"shape": asdict(shape), "check": check, "impls": impls}

    print()
    print(f"{'shape':<24}{'impl':<7}{'time ms':>10}{'peak extra MiB':>16}")
    for entry in report["shapes"].values():
        for name, res in entry["impls"].items():
            mem = f"{res['peak_extra_mib']:.1f}" if res["available"] else f"n/a ({res['reason']})"
            print(f"{entry['shape']['label']:<24}{name:<7}{res['median_ms']:>10.1f}{mem:>16}")

    print()
    print(f"{'shape':<24}{'naive/fast time':>24}{'fast/naive memory':>26}")
    all_pass = True
    for entry in report["shapes"].values():
        naive, fast = entry["impls"]["naive"], entry["impls"]["fast"]
        speedup = naive["median_ms"] / fast["median_ms"]
        time_ok = speedup >= SPEEDUP_TARGET
        memory_ratio = None
        if naive["available"] and fast["available"] and naive["peak_extra_mib"] > 0:
            memory_ratio = fast["peak_extra_mib"] / naive["peak_extra_mib"]
        memory_ok = None if memory_ratio is None else memory_ratio <= MEMORY_RATIO_TARGET
        entry.update(speedup=speedup, time_pass=time_ok, memory_ratio=memory_ratio, memory_pass=memory_ok)
        all_pass = all_pass and time_ok and memory_ok is True
        mem = "n/a" if memory_ratio is None else f"{memory_ratio:.2f}"
        print(
            f"{entry['shape']['label']:<24}{speedup:>10.1f}x {verdict(time_ok)} (>= {SPEEDUP_TARGET:g}x)"
            f"{mem:>12} {verdict(memory_ok)} (<= {MEMORY_RATIO_TARGET:g})"
        )
    report["all_pass"] = all_pass
    busy = others_cpu.read()
    report["others_cpu_busy"] = busy
    print(f"all targets met: {'yes' if all_pass else 'no'}")
    print(f"CPUs kept busy by other processes during the run: {'unknown' if busy is None else f'{busy:.0%}'}")
    if busy is not None and busy > BUSY_WARNING:
        print("warning: other processes were using the CPUs; times and their ratios are not reliable")

    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per implementation")
    parser.add_argument("--repeats", type=int, default=15, help="timed steps per implementation")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--child", nargs=2, metavar=("IMPL", "SHAPE"), help="internal: measure memory of one step and exit"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child is not None:
        impl, shape_key = args.child
        if impl not in IMPLS or shape_key not in SHAPES:
            parser.error(f"--child takes IMPL in {list(IMPLS)} and SHAPE in {list(SHAPES)}")
        print(json.dumps(child_memory(impl, shape_key)))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
