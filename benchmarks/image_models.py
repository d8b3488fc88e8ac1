"""Training-step time and peak memory of whole image models: our context-cluster operator vs the naive one.

The naive operator (:func:`pointcoc.cluster.reference.context_cluster_naive`, the official formulation with
``[B, M, N, D]`` products) is set as every cluster mixer's ``cluster_op``
(:func:`benchmarks.models_vs_naive.naive_ops`); nothing else changes, weights and inputs included.

A training step is ``zero_grad`` + forward + cross-entropy + backward (``train``); an inference step is a
forward in eval mode under ``torch.no_grad`` (``infer``). CPU, float32. Every measurement runs in its own
subprocess:

- time: ``--repeats`` steps after ``--warmup`` steps;
- memory: peak RSS during one step (after one warm-up step) minus RSS just before it, read from
  ``/proc/self/status`` after resetting the peak with ``/proc/self/clear_refs``. These run with
  ``MALLOC_MMAP_THRESHOLD_=65536`` so that glibc returns freed tensors to the OS instead of keeping them in
  its heap: RSS then tracks live memory and the warm-up step's freed buffers cannot hide part of the peak.

The two operators alternate over ``--rounds`` rounds, so that a change in background load hits both alike;
the table gives the median and min over all timed steps and the median peak over the rounds. The speed-up
is computed from the min times, the least disturbed estimate on a shared machine (with 2 OpenMP threads
on 2 cores, a concurrent process can stretch a step several-fold), and from the medians in brackets.

Usage: ``python benchmarks/image_models.py [--models coc_tiny coc_tiny_plain] [--batch 8] [--size 224]
[--threads 2] [--rounds 3] [--repeats 3] [--modes train infer] [--grad-checkpointing 1]`` (Linux only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Run from a checkout without installing: make the repository's package importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OPERATORS = ("ours", "naive")


def worker(model_name: str, operator: str, mode: str, kind: str, args: argparse.Namespace) -> dict:
    import torch

    import pointcoc
    from benchmarks.models_vs_naive import naive_ops

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = pointcoc.create_model(model_name).train(mode == "train")
    model.set_grad_checkpointing(bool(args.grad_checkpointing))
    with naive_ops(model) if operator == "naive" else contextlib.nullcontext():
        return _measure_steps(model, mode, kind, args)


def _measure_steps(model, mode: str, kind: str, args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F

    from pointcoc.utils.measure import MIB, rss_growth

    images = torch.randn(args.batch, 3, args.size, args.size)
    labels = torch.randint(0, 1000, (args.batch,))

    def step() -> float:
        model.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(mode == "train"):
            loss = F.cross_entropy(model(images), labels)
        if mode == "train":
            loss.backward()
        return loss.item()

    if kind == "time":
        for _ in range(args.warmup):
            loss = step()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return {"loss": loss, "times": times}
    step()
    model.zero_grad(set_to_none=True)
    return {"peak_mib": rss_growth(step) / MIB}


def measure(model_name: str, operator: str, mode: str, kind: str, args: argparse.Namespace) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    if kind == "memory":
        from pointcoc.utils.measure import MMAP_THRESHOLD_ENV

        env.update(MMAP_THRESHOLD_ENV)
    settings = {
        "batch": args.batch,
        "size": args.size,
        "threads": args.threads,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "grad-checkpointing": args.grad_checkpointing,
    }
    command = [
        sys.executable,
        __file__,
        "--worker",
        model_name,
        operator,
        mode,
        kind,
        *(f"--{k}={v}" for k, v in settings.items()),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["coc_tiny", "coc_tiny_plain"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=("train", "infer"), default=["train", "infer"])
    parser.add_argument(
        "--grad-checkpointing", type=int, choices=(0, 1), default=0,
        help="1: both models recompute block activations in backward (model.set_grad_checkpointing)",
    )  # fmt: skip
    parser.add_argument(
        "--worker", nargs=4, metavar=("MODEL", "OPERATOR", "MODE", "KIND"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if min(args.warmup, args.repeats, args.rounds) < 1:
        parser.error("--warmup, --repeats and --rounds must be >= 1")
    if args.worker:
        print(json.dumps(worker(*args.worker, args)))
        return

    import torch

    print(
        f"torch {torch.__version__}, batch {args.batch}, {args.size}x{args.size}, {args.threads} threads, "
        f"float32 CPU, {args.rounds} rounds of {args.repeats} timed steps (after {args.warmup} warm-up) "
        f"and 1 memory step per operator, grad checkpointing {'on' if args.grad_checkpointing else 'off'}"
    )
    rows = {}
    for mode in args.modes:
        for model_name in args.models:
            runs = {operator: {"times": [], "peaks": []} for operator in OPERATORS}
            for _ in range(args.rounds):
                for operator in OPERATORS:
                    timed = measure(model_name, operator, mode, "time", args)
                    runs[operator]["times"] += timed["times"]
                    runs[operator]["loss"] = timed["loss"]
                    memory = measure(model_name, operator, mode, "memory", args)
                    runs[operator]["peaks"].append(memory["peak_mib"])
            for operator, r in runs.items():
                rows[mode, model_name, operator] = {
                    "loss": r["loss"],
                    "median_s": statistics.median(r["times"]),
                    "min_s": min(r["times"]),
                    "peak_mib": statistics.median(r["peaks"]),
                }
    print()
    print("| step | model | operator | time (s), median [min] | peak memory of the step (MiB) | loss |")
    print("|---|---|---|---|---|---|")
    for (mode, model_name, operator), r in rows.items():
        print(
            f"| {mode} | {model_name} | {operator} | {r['median_s']:.3f} [{r['min_s']:.3f}] "
            f"| {r['peak_mib']:.0f} | {r['loss']:.5f} |"
        )
    print()
    print("| step | model | speed-up (naive time / ours): min [median] | memory (ours / naive) |")
    print("|---|---|---|---|")
    for mode in args.modes:
        for model_name in args.models:
            ours, naive = rows[mode, model_name, "ours"], rows[mode, model_name, "naive"]
            speedup = naive["min_s"] / ours["min_s"], naive["median_s"] / ours["median_s"]
            memory = ours["peak_mib"] / naive["peak_mib"]
            print(f"| {mode} | {model_name} | {speedup[0]:.2f}x [{speedup[1]:.2f}x] | {memory:.2f} |")


if __name__ == "__main__":
    main()
