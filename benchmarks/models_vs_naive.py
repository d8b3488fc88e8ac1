"""Whole-model training steps: our operator and FPS vs the naive official-formula operator and the
official pure-torch FPS loop, in one process.

Run from the repository root::

    python -m benchmarks.models_vs_naive [--models pointmlp_coc_elite coc_tiny coc_tiny_plain]
        [--point-batch 16] [--image-batch 8] [--points 1024] [--size 224] [--threads 2]
        [--warmup 1] [--repeats 5] [--device cpu|cuda] [--profile] [--json PATH]

"naive" runs the same model object, weights, optimiser and inputs with its operators swapped through their
public attributes for the duration of its steps: every cluster mixer's ``cluster_op`` becomes
:func:`pointcoc.cluster.reference.context_cluster_naive` (the official formula, ``[B, M, N, E]``
products) and every sampling module's ``fps_op`` (PointMLP's groupers, the point-set CoC) becomes
:func:`pointcoc.ops.reference.farthest_point_sample_official` (the official loop; image models have no
FPS). A step is ``zero_grad`` + forward + cross-entropy + backward + optimiser step
(:func:`pointcoc.utils.measure.make_train_step`). The two variants alternate step by step, so background load
hits both alike; the speed-up is reported from the medians and from the mins (the least disturbed
estimate on a shared machine). Before timing, both variants run one eval forward to show that they
compute the same logits. ``--profile`` prints where one step of each variant spends its time
(FPS, kNN, gathers, the cluster operator, backward, the rest), from ``torch.profiler``, with the forward
calls of those functions labelled from Python's profiling hook (:func:`sys.setprofile`).
Results: docs/benchmarks.md.
"""

from __future__ import annotations

import os

# As in main.py: busy-waiting OpenMP threads collapse when the cores are shared. Must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from types import CodeType  # noqa: E402

import torch  # noqa: E402

import pointcoc  # noqa: E402
from benchmarks.model_bench import declared_kind, default_optimizer, example_batch  # noqa: E402
from pointcoc.cluster import context_cluster  # noqa: E402
from pointcoc.cluster.reference import context_cluster_naive  # noqa: E402
from pointcoc.layers import ClusterMixer  # noqa: E402
from pointcoc.ops import farthest_point_sample, gather_points, knn_points  # noqa: E402
from pointcoc.ops.reference import farthest_point_sample_official  # noqa: E402
from pointcoc.utils.measure import (  # noqa: E402
    OthersCpuMeter,
    describe_machine,
    interleaved_times,
    machine_info,
    make_train_step,
    steady_heap,
)

SPEEDUP_TARGET = 1.5  # naive step time / our step time, issue #8
VARIANTS = ("ours", "naive")


def official_fps(points: torch.Tensor, num_samples: int, skip_near_origin: bool = False) -> torch.Tensor:
    """The official pure-torch FPS loop in :func:`pointcoc.ops.farthest_point_sample`'s form. That loop
    chooses near-origin points like any other, so a model sampling as the CUDA kernel does is refused."""
    if skip_near_origin:
        raise ValueError(
            "the official torch FPS loop has no skip_near_origin; benchmark a model built without "
            "fps_skip_near_origin"
        )
    return farthest_point_sample_official(points, num_samples)


@contextmanager
def naive_ops(model: torch.nn.Module) -> Iterator[None]:
    """The official operator and FPS loop in place of ours in ``model``, for the steps run inside: set
    through the mixers' ``cluster_op`` and the sampling modules' ``fps_op``, restored afterwards."""
    swaps = [(m, "cluster_op", context_cluster_naive) for m in model.modules() if isinstance(m, ClusterMixer)]
    swaps += [(m, "fps_op", official_fps) for m in model.modules() if hasattr(m, "fps_op")]
    previous = [getattr(m, attr) for m, attr, _ in swaps]
    try:
        for m, attr, op in swaps:
            setattr(m, attr, op)
        yield
    finally:
        for (m, attr, _), op in zip(swaps, previous):
            setattr(m, attr, op)


def in_variant(variant: str, model: torch.nn.Module, fn: Callable[[], object]) -> Callable[[], object]:
    def run():
        if variant == "ours":
            return fn()
        with naive_ops(model):
            return fn()

    return run


def logits_agreement(model: torch.nn.Module, inputs: torch.Tensor) -> float:
    """Largest |logit difference| between the variants in one eval forward from the same weights."""
    model.eval()
    with torch.no_grad():
        ours = model(inputs)
        with naive_ops(model):
            naive = model(inputs)
    return (ours - naive).abs().max().item()


# Forward calls labelled in the profile, ours and the naive ones: function -> label.
PROFILED = {
    farthest_point_sample: "FPS",
    official_fps: "FPS",
    knn_points: "kNN",
    gather_points: "gather",
    context_cluster: "cluster operator",
    context_cluster_naive: "cluster operator",
}
LABELS = list(dict.fromkeys(PROFILED.values()))


@contextmanager
def labelled_calls(labels: dict[CodeType, str]) -> Iterator[None]:
    """Wrap every Python call of the given code objects in a ``torch.profiler.record_function`` of its label,
    from the interpreter's profiling hook: the functions themselves and the modules calling them are left as
    they are."""
    open_calls: list[tuple[object, torch.profiler.record_function]] = []

    def hook(frame, event, arg) -> None:
        if event == "call" and frame.f_code in labels:
            record = torch.profiler.record_function(labels[frame.f_code])
            record.__enter__()
            open_calls.append((frame, record))
        elif event == "return" and open_calls and open_calls[-1][0] is frame:
            open_calls.pop()[1].__exit__(None, None, None)

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield
    finally:
        sys.setprofile(previous)


def profile_breakdown(step: Callable[[], object]) -> dict[str, float]:
    """Seconds of one call of ``step`` by component: the labelled forward calls, backward, the rest."""
    codes = {inspect.unwrap(fn).__code__: label for fn, label in PROFILED.items()}
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        with labelled_calls(codes), torch.profiler.record_function("step"):
            step()
    totals = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages()}
    parts = {label: totals.get(label, 0.0) for label in LABELS}
    parts["backward (all)"] = sum(t for k, t in totals.items() if k.startswith("autograd::engine::evaluate"))
    parts["rest: layers' forward, loss, optimizer"] = totals["step"] - sum(parts.values())
    parts["step"] = totals["step"]
    return parts


def print_breakdown(name: str, parts: dict[str, dict[str, float]]) -> None:
    print(
        f"\n{name}: one profiled training step, seconds (forward calls labelled; profiler overhead included)"
    )
    print(f"{'component':<42}" + "".join(f"{v:>10}" for v in VARIANTS))
    for component in parts[VARIANTS[0]]:
        print(f"{component:<42}" + "".join(f"{parts[v][component]:>10.3f}" for v in VARIANTS))


def compare_model(
    name: str,
    batch: int,
    device: str = "cpu",
    points: int = 1024,
    size: int = 224,
    warmup: int = 1,
    repeats: int = 5,
    profile: bool = False,
) -> dict[str, object]:
    """Training-step times of both variants of one model (and, for point models, of their first FPS)."""
    dev = torch.device(device)
    torch.manual_seed(0)
    model = pointcoc.create_model(name)
    point = model.model_cfg.is_points
    if point and points != model.model_cfg.num_points:
        torch.manual_seed(0)
        model = pointcoc.create_model(name, num_points=points)
    inputs = example_batch(model, batch, size).to(dev)
    model = model.to(dev)
    labels = torch.randint(0, model.num_classes, (batch,), device=dev)
    diff = logits_agreement(model, inputs)
    step = make_train_step(model, inputs, labels, default_optimizer(model))
    steps = {variant: in_variant(variant, model, step) for variant in VARIANTS}
    if profile:
        steps[VARIANTS[0]]()  # warm-up outside the profile
        print_breakdown(name, {v: in_variant(v, model, lambda: profile_breakdown(step))() for v in VARIANTS})
    times = interleaved_times(steps, warmup, repeats, dev)
    row: dict[str, object] = {"model": name, "batch": batch, "input": list(inputs.shape), "logits_diff": diff}
    for variant in VARIANTS:
        row[variant] = {"times": times[variant], "median": statistics.median(times[variant]),
                        "min": min(times[variant])}  # fmt: skip
    row["speedup_median"] = row["naive"]["median"] / row["ours"]["median"]
    row["speedup_min"] = row["naive"]["min"] / row["ours"]["min"]
    if point:  # the FPS of the first stage alone, same interleaving
        samples = model.stage_samples[0] if hasattr(model, "stage_samples") else model.centers[0]
        fps = interleaved_times(
            {"ours": lambda: farthest_point_sample(inputs, samples),
             "naive": lambda: farthest_point_sample_official(inputs, samples)},
            warmup, repeats, dev,
        )  # fmt: skip
        row["fps"] = {"samples": samples, **{v: min(t) for v, t in fps.items()}}
    return row


def print_table(rows: list[dict[str, object]]) -> None:
    print()
    print(
        "| model | input | ours s/step, median [min] | naive s/step, median [min] | speed-up median [min] |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        cells = [f"{r[v]['median']:.3f} [{r[v]['min']:.3f}]" for v in VARIANTS]
        verdict = "PASS" if r["speedup_min"] >= SPEEDUP_TARGET else "FAIL"
        print(
            f"| {r['model']} | {r['input']} | {cells[0]} | {cells[1]} | "
            f"{r['speedup_median']:.2f}x [{r['speedup_min']:.2f}x] {verdict} (>= {SPEEDUP_TARGET:g}x) |"
        )
    for r in rows:
        if "fps" in r:
            f = r["fps"]
            print(
                f"{r['model']} first-stage FPS ({r['input']} -> {f['samples']}), min: "
                f"ours {f['ours'] * 1e3:.1f} ms, official loop {f['naive'] * 1e3:.1f} ms "
                f"({f['naive'] / f['ours']:.1f}x)"
            )
    for r in rows:
        print(f"{r['model']}: max |logits ours - logits naive| = {r['logits_diff']:.2e} (same weights, eval)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["pointmlp_coc_elite", "coc_tiny", "coc_tiny_plain"])
    parser.add_argument("--point-batch", type=int, default=16)
    parser.add_argument("--image-batch", type=int, default=8)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print where one step of each spends its time")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    unknown = [m for m in args.models if m not in pointcoc.list_models()]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; `python main.py list` names them all")
    if min(args.warmup, args.repeats, args.threads, args.point_batch, args.image_batch) < 1:
        parser.error("--warmup, --repeats, --threads and the batches must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch.cuda.is_available() is False")
    torch.set_num_threads(args.threads)
    steady = args.device == "cpu" and steady_heap()
    info = machine_info(args.device)
    print(f"{describe_machine(info)}; float32 {args.device}; {args.warmup} warm-up + {args.repeats} "
          "timed steps each, ours/naive alternating"
          + ("; glibc heap in its settled state" if steady else ""))  # fmt: skip
    meter = OthersCpuMeter()
    batches = {"points": args.point_batch, "image": args.image_batch}
    rows = [
        compare_model(
            name, batches[declared_kind(name)], args.device, args.points, args.size, args.warmup,
            args.repeats, args.profile,
        )
        for name in args.models
    ]  # fmt: skip
    print_table(rows)
    busy = meter.read()
    print(f"CPUs kept busy by other processes during the run: {'unknown' if busy is None else f'{busy:.0%}'}")
    if args.json is not None:
        args.json.write_text(
            json.dumps({"machine": info, "others_cpu_busy": busy, "rows": rows}, indent=2) + "\n"
        )
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
