"""Every GPU figure that issue #8 asks for, in one run, printed as the tables of docs/benchmarks.md.

Run from the repository root on a CUDA machine::

    python -m benchmarks.gpu_suite [--out gpu_results.md] [--skip-compile]

1. FPS: the Triton kernel vs our pure-torch loop vs the official loop (vs pytorch3d when it imports), on
   clouds of several sizes; all backends are first checked to return the same indices.
2. ``pointmlp_coc``, batch 32, 1024 points, fp32 and bf16: ``main.py bench`` figures (training and
   inference samples/s, peak memory).
3. ``coc_tiny``, batch 128, 224x224: fp32, bf16, bf16 + channels_last, and bf16 + channels_last +
   ``torch.compile`` (unless ``--skip-compile``); target: inference above 5,000 images/s in bf16.
4. ``pointmlp_coc`` (batch 32) and ``coc_tiny`` (batch 128) training steps vs the naive operator with the
   official FPS loop (:mod:`benchmarks.models_vs_naive`); target: pointmlp_coc at least 2x faster.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from importlib import metadata
from pathlib import Path

import torch

from benchmarks.model_bench import benchmark_model
from benchmarks.models_vs_naive import compare_model
from pointcoc.ops import backends, farthest_point_sample
from pointcoc.ops.reference import farthest_point_sample_official
from pointcoc.utils.measure import MIB, describe_machine, interleaved_times, machine_info

FPS_SHAPES = [(32, 1024, 3, 512), (8, 8192, 3, 2048), (2, 100_000, 3, 4096), (32, 3136, 5, 64)]
COC_TINY_INFER_TARGET = 5000.0  # images/s, bf16, batch 128, H100
POINT_SPEEDUP_TARGET = 2.0  # naive + official FPS loop step time / ours, pointmlp_coc on the same GPU


def fps_table(device: torch.device) -> list[str]:
    impls = {
        "triton": lambda p, s: farthest_point_sample(p, s, backend="triton"),
        "torch loop (ours)": lambda p, s: farthest_point_sample(p, s, backend="torch"),
        "official loop": farthest_point_sample_official,
    }
    if backends.pytorch3d_ops() is not None:
        impls["pytorch3d"] = lambda p, s: farthest_point_sample(p, s, backend="pytorch3d")
    lines = [
        "| points [B, N, D] -> samples | " + " | ".join(f"{name} ms" for name in impls) + " | same indices |"
    ]
    lines.append("|---" * (len(impls) + 2) + "|")
    for b, n, d, s in FPS_SHAPES:
        pts = torch.rand(b, n, d, device=device)
        results = [fn(pts, s) for fn in impls.values()]
        same = all(torch.equal(results[0], r) for r in results[1:])
        times = interleaved_times(
            {name: (lambda fn=fn, pts=pts, s=s: fn(pts, s)) for name, fn in impls.items()}, 2, 10, device
        )
        cells = " | ".join(f"{statistics.median(t) * 1e3:.2f}" for t in times.values())
        lines.append(f"| [{b}, {n}, {d}] -> {s} | {cells} | {'yes' if same else 'NO'} |")
    return lines


def model_rows(configs: list[dict[str, object]], device: torch.device) -> list[str]:
    notes = []
    lines = [
        "| model | batch | precision | channels_last | compile | train samples/s | infer samples/s "
        "| peak train MiB | peak infer MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for config in configs:
        r = benchmark_model(device=str(device), warmup=5, repeats=20, **config)
        lines.append(
            f"| {r.model} | {r.batch} | {r.precision} | {'on' if r.channels_last else 'off'} "
            f"| {'on' if r.compiled else 'off'} | {r.throughput('train'):,.0f} "
            f"| {r.throughput('infer'):,.0f} | {r.train_peak / MIB:,.0f} | {r.infer_peak / MIB:,.0f} |"
        )
        if r.model == "coc_tiny" and r.precision == "bf16":
            ok = r.throughput("infer") > COC_TINY_INFER_TARGET
            notes.append(
                f"coc_tiny bf16 (channels_last {'on' if r.channels_last else 'off'}, compile "
                f"{'on' if r.compiled else 'off'}): inference {r.throughput('infer'):,.0f} images/s, "
                f"target > {COC_TINY_INFER_TARGET:,.0f}: {'met' if ok else 'missed'}"
            )
        torch.cuda.empty_cache()
    return lines + [""] + notes


def naive_rows(device: torch.device) -> list[str]:
    lines = [
        "| model | input | ours ms/step, median [min] | naive + official FPS ms/step, median [min] "
        "| speed-up |",
        "|---|---|---|---|---|",
    ]
    for name, batch in (("pointmlp_coc", 32), ("coc_tiny", 128)):
        r = compare_model(name, batch, str(device), warmup=3, repeats=10)
        cells = [f"{r[v]['median'] * 1e3:.1f} [{r[v]['min'] * 1e3:.1f}]" for v in ("ours", "naive")]
        verdict = ""
        if name == "pointmlp_coc":
            met = r["speedup_median"] >= POINT_SPEEDUP_TARGET
            verdict = f" (target >= {POINT_SPEEDUP_TARGET:g}x: {'met' if met else 'missed'})"
        lines.append(
            f"| {name} | {r['input']} | {cells[0]} | {cells[1]} | {r['speedup_median']:.2f}x{verdict} |"
        )
        torch.cuda.empty_cache()
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    parser.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile row")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("no CUDA device: this suite measures GPU figures only")
    device = torch.device("cuda")
    triton = "absent" if backends.triton_fps() is None else metadata.version("triton")
    info = machine_info(device)
    out = [
        f"Machine: {describe_machine(info)}; triton {triton}; "
        f"pytorch3d {'absent' if backends.pytorch3d_ops() is None else 'present'}",
        "",
        "FPS, median of 10 calls after 2 warm-up (interleaved):",
        "",
        *fps_table(device),
        "",
    ]
    print("\n".join(out), flush=True)
    configs: list[dict[str, object]] = [
        {"name": "pointmlp_coc", "batch": 32, "precision": "fp32"},
        {"name": "pointmlp_coc", "batch": 32, "precision": "bf16"},
        {"name": "coc_tiny", "batch": 128, "precision": "fp32"},
        {"name": "coc_tiny", "batch": 128, "precision": "bf16"},
        {"name": "coc_tiny", "batch": 128, "precision": "bf16", "channels_last": True},
    ]
    if not args.skip_compile:
        configs.append({"name": "coc_tiny", "batch": 128, "precision": "bf16", "channels_last": True,
                        "compile": True})  # fmt: skip
    section = ["Models (`main.py bench`: median of 20 steps after 5 warm-up, synchronised):", ""]
    section += model_rows(configs, device) + [""]
    print("\n".join(section), flush=True)
    out += section
    section = ["Training step vs the naive operator and the official FPS loop (fp32, same GPU):", ""]
    section += naive_rows(device)
    print("\n".join(section), flush=True)
    out += section
    if args.out is not None:
        args.out.write_text("\n".join(out) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
