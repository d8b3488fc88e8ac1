"""Whole-model training steps: our operator and FPS vs the naive official-formula operator and the
official pure-torch FPS loop, in one process.

Run from the repository root::

    python -m benchmarks.models_vs_naive [--models pointmlp_coc_elite coc_tiny coc_tiny_plain]
        [--point-batch 16] [--image-batch 8] [--points 1024] [--size 224] [--threads 2]
        [--warmup 1] [--repeats 5] [--device cpu|cuda] [--profile] [--json PATH]

"naive" runs the same model object, weights, optimiser and inputs with two names rebound for the duration
of its steps: ``context_cluster`` in :mod:`pointcoc.layers.cluster_mixers` becomes
:func:`pointcoc.cluster.reference.context_cluster_naive` (the official formula, ``[B, M, N, E]``
products) and ``farthest_point_sample`` in :mod:`pointcoc.models.pointmlp` and
:mod:`pointcoc.models.pointset_coc` becomes
:func:`pointcoc.ops.reference.farthest_point_sample_official` (the official loop; image models have no
FPS). A step is ``zero_grad`` + forward + cross-entropy + backward + optimiser step
(:func:`pointcoc.bench.make_train_step`). The two variants alternate step by step, so background load
hits both alike; the speed-up is reported from the medians and from the mins (the least disturbed
estimate on a shared machine). Before timing, both variants run one eval forward to show that they
compute the same logits. ``--profile`` prints where one step of each variant spends its time
(FPS, kNN, gathers, the cluster operator, backward, the rest), from ``torch.profiler``.
Results: docs/benchmarks.md.
"""

from __future__ import annotations

import os

# As in main.py: busy-waiting OpenMP threads collapse when the cores are shared. Must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from contextlib import ExitStack, contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from unittest import mock  # noqa: E402

import torch  # noqa: E402

import pointcoc  # noqa: E402
import pointcoc.layers.cluster_mixers as mixers  # noqa: E402
import pointcoc.models.pointmlp as pointmlp  # noqa: E402
import pointcoc.models.pointset_coc as pointset_coc  # noqa: E402
from pointcoc.bench import (  # noqa: E402
    OthersCpuMeter,
    default_optimizer,
    describe_machine,
    interleaved_times,
    is_point_model,
    machine_info,
    make_train_step,
)
from pointcoc.cluster.reference import context_cluster_naive  # noqa: E402
from pointcoc.ops import farthest_point_sample  # noqa: E402
from pointcoc.ops.reference import farthest_point_sample_official  # noqa: E402

SPEEDUP_TARGET = 1.5  # naive step time / our step time, issue #8
VARIANTS = ("ours", "naive")
POINT_FAMILIES = (pointmlp, pointset_coc)  # the model modules that call FPS, kNN and gathers


@contextmanager
def naive_path():
    """The official operator and FPS loop in place of ours, for the steps run inside."""
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(mixers, "context_cluster", context_cluster_naive))
        for family in POINT_FAMILIES:
            stack.enter_context(
                mock.patch.object(family, "farthest_point_sample", farthest_point_sample_official)
            )
        yield


def in_variant(variant: str, fn):
    def run():
        if variant == "ours":
            return fn()
        with naive_path():
            return fn()

    return run


def logits_agreement(model: torch.nn.Module, inputs: torch.Tensor) -> float:
    """Largest |logit difference| between the variants in one eval forward from the same weights."""
    model.eval()
    with torch.no_grad():
        ours = model(inputs)
        with naive_path():
            naive = model(inputs)
    return (ours - naive).abs().max().item()


# Forward calls labelled in the profile: (module, name it is called by, label).
PROFILED = (
    *((family, "farthest_point_sample", "FPS") for family in POINT_FAMILIES),
    *((family, "knn_points", "kNN") for family in POINT_FAMILIES),
    *((family, "gather_points", "gather") for family in (*POINT_FAMILIES, mixers)),
    (mixers, "context_cluster", "cluster operator"),
)


def _labelled(fn, label: str):
    def call(*args, **kwargs):
        with torch.profiler.record_function(label):
            return fn(*args, **kwargs)

    return call


def profile_breakdown(step) -> dict[str, float]:
    """Seconds of one call of ``step`` by component: the labelled forward calls, backward, the rest.

    The functions in ``PROFILED`` are wrapped as they are bound when ``step`` runs (ours or the naive
    ones), so call it inside the variant.
    """
    with ExitStack() as stack:
        for module, attr, label in PROFILED:
            stack.enter_context(mock.patch.object(module, attr, _labelled(getattr(module, attr), label)))
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            with torch.profiler.record_function("step"):
                step()
    totals = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages()}
    parts = {label: totals.get(label, 0.0) for _, _, label in PROFILED}
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
    point = is_point_model(name)
    torch.manual_seed(0)
    model = pointcoc.create_model(name, **({"num_points": points} if point else {}))
    inputs = (model.example_input(batch) if point else model.example_input(batch, size=size)).to(dev)
    model = model.to(dev)
    labels = torch.randint(0, model.num_classes, (batch,), device=dev)
    diff = logits_agreement(model, inputs)
    step = make_train_step(model, inputs, labels, default_optimizer(model, point))
    steps = {variant: in_variant(variant, step) for variant in VARIANTS}
    if profile:
        steps[VARIANTS[0]]()  # warm-up outside the profile
        print_breakdown(name, {v: in_variant(v, lambda: profile_breakdown(step))() for v in VARIANTS})
    times = interleaved_times(steps, warmup, repeats, dev)
    row: dict[str, object] = {"model": name, "batch": batch, "input": list(inputs.shape), "logits_diff": diff}
    for variant in VARIANTS:
        row[variant] = {"times": times[variant], "median": statistics.median(times[variant]),
                        "min": min(times[variant])}  # fmt: skip
    row["speedup_median"] = row["naive"]["median"] / row["ours"]["median"]
    row["speedup_min"] = row["naive"]["min"] / row["ours"]["min"]
    if point:  # the FPS of the first stage alone, same interleaving
        samples = model.stage_samples[0] if isinstance(model, pointmlp.PointMLP) else model.centers[0]
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
    info = machine_info(args.device)
    print(f"{describe_machine(info)}; float32 {args.device}; {args.warmup} warm-up + {args.repeats} "
          "timed steps each, ours/naive alternating")  # fmt: skip
    meter = OthersCpuMeter()
    rows = [
        compare_model(
            name, args.point_batch if is_point_model(name) else args.image_batch, args.device, args.points,
            args.size, args.warmup, args.repeats, args.profile,
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
