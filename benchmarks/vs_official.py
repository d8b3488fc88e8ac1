"""Our modules against the official code itself: same weights, outputs checked, then time and peak memory.

Run from the repository root::

    python -m benchmarks.vs_official --official DIR [--models ROW ...] [--device cpu|cuda] [--threads 2]
        [--warmup 1] [--repeats 5] [--module-repeats 21] [--no-memory] [--compile] [--json PATH]

``DIR`` holds clones of ma-xu/Context-Cluster and ma-xu/pointMLP-pytorch (``../shared/reference`` here); their
model files are imported by path (:mod:`benchmarks.official_code`, which also says what it stands in for
when timm or pointnet2_ops cannot be imported). For every row the official module is built from its
constructor arguments and ours from the same arguments and the official module's state dict
(:func:`pointcoc.compat.official_model`). Then:

1. **Agreement.** One eval forward of each on the same input must agree (max |difference| <= 1e-4); for
   the ``Cluster`` rows, the gradients of the input and of every parameter after one backward too.
   A row whose outputs differ is reported and not timed (exit status 1).
2. **Time.** The training step (image and point models: ``zero_grad`` + forward + cross-entropy + backward
   + optimiser step, :func:`pointcoc.utils.measure.make_train_step` with the official recipe's optimiser kind;
   ``Cluster``: forward + backward of a fixed output gradient) and the inference step (eval,
   ``inference_mode``) of both sides alternate in one process
   (:func:`pointcoc.utils.measure.interleaved_times`),
   after ``--warmup`` untimed steps each; the table gives the medians and their ratio. On CPU glibc's heap
   is held in the state a long run settles in (:func:`pointcoc.utils.measure.steady_heap`), so that no
   row's figure depends on which rows ran before it in the process.
3. **Peak memory** of one training step, each side in its own fresh process (after one warm-up step):
   on CPU the bytes of the tensors alive before the step plus the step's peak RSS growth, with glibc's
   mmap threshold fixed (as ``main.py bench``); on CUDA ``max_memory_allocated``.

Rows: the ``Cluster`` module at every coc_tiny stage shape and at coc_tiny_plain's first stage, batch 8
at 224 input; coc_tiny, coc_tiny_plain, coc_small (batch 8, 224); pointMLP, pointMLP-elite, pointMLP_CoC
(batch 8, 1024 points). Targets are issue #17's. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import os

# As in main.py: busy-waiting OpenMP threads collapse when the cores are shared. Must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from benchmarks.model_bench import default_optimizer  # noqa: E402
from benchmarks.official_code import OfficialCode  # noqa: E402
from pointcoc.compat import official_model  # noqa: E402
from pointcoc.engine import compile_model  # noqa: E402
from pointcoc.utils.measure import (  # noqa: E402
    MIB,
    MMAP_THRESHOLD_ENV,
    OthersCpuMeter,
    describe_machine,
    fix_mmap_threshold,
    interleaved_times,
    machine_info,
    make_infer_step,
    make_train_step,
    rss_growth,
    steady_heap,
    synchronize,
    tensor_bytes,
)

SIDES = ("official", "ours")
AGREEMENT_ATOL = 1e-4
GROUP_NORM = "models.context_cluster.GroupNorm"


@dataclass(frozen=True)
class Row:
    """One line of the table: an official constructor, its arguments and the input it is measured on."""

    label: str
    builder: str  # official class, as pointcoc.compat.official_model names it
    kwargs: dict
    input_shape: tuple[int, ...]  # official layout
    small_shape: tuple[int, ...]  # the quick agreement check's input (tests)
    small_kwargs: dict = field(default_factory=dict)  # overrides for that check
    speed_target: float | None = None  # official time / our time, training step
    memory_target: float | None = 1.0  # our peak / official peak, training step

    @property
    def kind(self) -> str:
        if self.builder.endswith(".Cluster"):
            return "module"
        return "image" if self.builder.endswith("ContextCluster") else "point"


def _cluster_row(
    label: str, dim: int, size: int, fold: int, heads: int, proposals: int = 2, **targets
) -> Row:
    # Issue #17's memory targets are every model's peak and stage 0's; the other Cluster steps peak at a few
    # MiB, where repeated measurements of one side spread by ~0.2 MiB: their ratio is printed, not judged.
    targets.setdefault("memory_target", None)
    kwargs = dict(dim=dim, out_dim=dim, heads=heads, head_dim=24)
    kwargs.update(proposal_w=proposals, proposal_h=proposals, fold_w=fold, fold_h=fold)
    small = max(size // 8, 2 * fold)
    return Row(
        label,
        "models.context_cluster.Cluster",
        kwargs,
        (8, dim, size, size),
        (2, dim, small, small),
        **targets,
    )


_TINY = dict(
    layers=[3, 4, 5, 2],
    embed_dims=[32, 64, 196, 320],
    mlp_ratios=[8, 8, 4, 4],
    downsamples=[True] * 4,
    heads=[4, 4, 8, 8],
    head_dim=[24] * 4,
    down_patch_size=3,
    down_pad=1,
    norm_layer=GROUP_NORM,
)
_REGIONS = dict(proposal_w=[2] * 4, proposal_h=[2] * 4, fold_w=[8, 4, 2, 1], fold_h=[8, 4, 2, 1])
_PLAIN = dict(proposal_w=[4, 4, 2, 2], proposal_h=[4, 4, 2, 2], fold_w=[1] * 4, fold_h=[1] * 4)
_SMALL = dict(_TINY, **_REGIONS, layers=[2, 2, 6, 2], embed_dims=[64, 128, 320, 512], head_dim=[32] * 4)
# pointMLP-pytorch's pointMLP / pointMLPElite and Context-Cluster's pointMLP_CoC factory arguments.
_POINTMLP = dict(
    points=1024,
    class_num=40,
    embed_dim=64,
    groups=1,
    res_expansion=1.0,
    activation="relu",
    bias=False,
    use_xyz=False,
    normalize="anchor",
    dim_expansion=[2, 2, 2, 2],
    pre_blocks=[2, 2, 2, 2],
    pos_blocks=[2, 2, 2, 2],
    k_neighbors=[24] * 4,
    reducers=[2] * 4,
)
_ELITE = dict(
    _POINTMLP,
    embed_dim=32,
    res_expansion=0.25,
    dim_expansion=[2, 2, 2, 1],
    pre_blocks=[1, 1, 2, 1],
    pos_blocks=[1, 1, 2, 1],
)
# The quick check: stage anchors 128 ... 16 (still >= k = 24 points to group), a quarter of the widths.
_FEW_POINTS = dict(points=256, embed_dim=16)


def _image_row(label: str, kwargs: dict, **targets) -> Row:
    builder, one_block = "models.context_cluster.ContextCluster", dict(layers=[1, 1, 1, 1])
    return Row(label, builder, kwargs, (8, 3, 224, 224), (2, 3, 64, 64), one_block, **targets)


def _point_row(label: str, builder: str, kwargs: dict, **targets) -> Row:
    return Row(label, builder, kwargs, (8, 3, 1024), (2, 3, 256), _FEW_POINTS, **targets)


ROWS: dict[str, Row] = {
    row.label.split(" ")[0]: row
    for row in (
        _cluster_row(
            "cluster_s0 (coc_tiny stage 0, fold 8, 4 heads)",
            32,
            56,
            8,
            4,
            speed_target=3.0,
            memory_target=0.5,
        ),
        _cluster_row("cluster_s1 (coc_tiny stage 1, fold 4, 4 heads)", 64, 28, 4, 4),
        _cluster_row("cluster_s2 (coc_tiny stage 2, fold 2, 8 heads)", 196, 14, 2, 8, speed_target=2.0),
        _cluster_row("cluster_s3 (coc_tiny stage 3, no fold, 8 heads)", 320, 7, 1, 8),
        _cluster_row("cluster_plain_s0 (coc_tiny_plain stage 0, 16 centers)", 32, 56, 1, 4, proposals=4),
        _image_row("coc_tiny", dict(_TINY, **_REGIONS), speed_target=1.5),
        _image_row("coc_tiny_plain", dict(_TINY, **_PLAIN), speed_target=2.5),
        _image_row("coc_small", _SMALL),
        _point_row("pointMLP", "classification_ModelNet40.models.pointmlp.Model", _POINTMLP),
        _point_row("pointMLP-elite", "classification_ModelNet40.models.pointmlp.Model", _ELITE),
        _point_row("pointMLP_CoC", "pointcloud.models.contextcluster.Model", _POINTMLP, speed_target=2.0),
    )
}


def official_module(code: OfficialCode, row: Row, kwargs: dict) -> nn.Module:
    """The official module of ``row`` built from ``kwargs`` (``norm_layer`` given by name)."""
    kwargs = dict(kwargs)
    if row.kind == "module":
        return code.image.Cluster(**kwargs)
    if row.kind == "image":
        kwargs.pop("norm_layer")  # GROUP_NORM: the only norm our ContextCluster builds
        return code.image.ContextCluster(**kwargs, norm_layer=code.image.GroupNorm)
    module = code.point_coc if row.builder.startswith("pointcloud.") else code.pointmlp
    return module.Model(**kwargs)


@dataclass
class Pair:
    """Both sides of a row with the same weights, and the input, labels and output gradient to run them on."""

    modules: dict[str, nn.Module]
    inputs: torch.Tensor
    labels: torch.Tensor | None  # models
    grad_output: torch.Tensor | None  # Cluster


def build_pair(code: OfficialCode, row: Row, device: str = "cpu", small: bool = False) -> Pair:
    kwargs = {**row.kwargs, **row.small_kwargs} if small else row.kwargs
    shape = row.small_shape if small else row.input_shape
    torch.manual_seed(0)
    official = official_module(code, row, kwargs)
    ours = official_model(row.builder, kwargs, official.state_dict())
    dev = torch.device(device)
    inputs = torch.randn(shape, device=dev)
    labels = grad_output = None
    if row.kind == "module":
        grad_output = torch.randn(shape, device=dev)
    else:
        labels = torch.randint(
            0, kwargs.get("num_classes", kwargs.get("class_num", 1000)), (shape[0],), device=dev
        )
    return Pair({"official": official.to(dev), "ours": ours.to(dev)}, inputs, labels, grad_output)


def agreement(pair: Pair) -> dict[str, float]:
    """Max |official - ours| of the eval outputs; for ``Cluster`` also of the input and parameter gradients
    (each scaled by its largest official entry where that exceeds 1)."""
    outs, grads = {}, {}
    for side, module in pair.modules.items():
        module.eval()
        x = pair.inputs.clone().requires_grad_(pair.grad_output is not None)
        with torch.set_grad_enabled(pair.grad_output is not None):
            outs[side] = module(x)
        if pair.grad_output is not None:
            module.zero_grad(set_to_none=True)
            outs[side].backward(pair.grad_output)
            grads[side] = {"input": x.grad, **{n: p.grad for n, p in module.named_parameters()}}
    diffs = {"output": (outs["official"] - outs["ours"]).abs().max().item()}
    if grads:
        if set(grads["official"]) != set(grads["ours"]):
            raise RuntimeError(
                f"parameter names differ: {sorted(grads['official'])} vs {sorted(grads['ours'])}"
            )
        # relative to each gradient's largest entry (when above 1): weight gradients sum over the whole batch
        diffs["gradients"] = max(
            (
                (grads["official"][n] - grads["ours"][n]).abs().max()
                / grads["official"][n].abs().max().clamp_min(1)
            ).item()
            for n in grads["ours"]
        )
    return diffs


def _module_train_step(
    module: nn.Module, inputs: torch.Tensor, grad_output: torch.Tensor
) -> Callable[[], None]:
    x = inputs.clone().requires_grad_(True)

    def step() -> None:
        module.train()
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).backward(grad_output)

    return step


def _train_step(pair: Pair, row: Row, side: str) -> tuple[Callable[[], object], torch.optim.Optimizer | None]:
    module = pair.modules[side]
    if row.kind == "module":
        return _module_train_step(module, pair.inputs, pair.grad_output), None
    optimizer = default_optimizer(module, row.kind == "point")
    return make_train_step(module, pair.inputs, pair.labels, optimizer), optimizer


def steps_of(pair: Pair, row: Row, side: str, compiled: bool = False) -> dict[str, Callable[[], object]]:
    """``{"train": ..., "infer": ...}`` of one side; the training step's optimiser is created here.

    ``compiled``: our side's training step runs through ``torch.compile`` (static shapes,
    :func:`pointcoc.engine.compile_model`, as ``runtime.compile`` trains); inference stays eager."""
    train_pair = pair
    if compiled and side == "ours":
        train_pair = dataclasses.replace(
            pair, modules={**pair.modules, side: compile_model(pair.modules[side])}
        )
    return {
        "train": _train_step(train_pair, row, side)[0],
        "infer": make_infer_step(pair.modules[side], pair.inputs),
    }


def time_row(
    pair: Pair, row: Row, warmup: int, repeats: int, device: str, compiled: bool = False
) -> dict[str, list[float]]:
    steps = {
        f"{side} {mode}": fn for side in SIDES for mode, fn in steps_of(pair, row, side, compiled).items()
    }
    return interleaved_times(steps, warmup, repeats, torch.device(device))


def _after(step: Callable[[], object], dev: torch.device, read: Callable[[], float]) -> float:
    step()
    synchronize(dev)
    return read()


def peak_memory_worker(official_dir: str, key: str, side: str, device: str, threads: int) -> float | None:
    """Peak bytes of one training step of one side (run in a fresh process by :func:`peak_memory`)."""
    torch.set_num_threads(threads)
    dev = torch.device(device)
    if dev.type == "cpu":
        fix_mmap_threshold()
    row = ROWS[key]
    pair = build_pair(OfficialCode(official_dir), row, device)
    pair.modules = {side: pair.modules[side]}  # free the other side before measuring
    gc.collect()
    module = pair.modules[side]
    step, optimizer = _train_step(pair, row, side)
    step()  # warm-up: lazy initialisations and the optimiser state exist from here on
    module.zero_grad(set_to_none=True)
    synchronize(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        return _after(step, dev, lambda: float(torch.cuda.max_memory_allocated(dev)))
    state = [] if optimizer is None else [t for s in optimizer.state.values() for t in s.values()]
    kept = [*module.parameters(), *module.buffers(), pair.inputs, pair.labels, pair.grad_output, *state]
    alive = tensor_bytes(t for t in kept if isinstance(t, torch.Tensor))
    growth = rss_growth(step)
    return None if growth is None else alive + growth


def peak_memory(official_dir: str, key: str, side: str, device: str, threads: int) -> float | None:
    """:func:`peak_memory_worker` in a fresh Python process with the fixed mmap threshold."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.vs_official",
        "--official",
        official_dir,
        "--memory-worker",
        key,
        side,
        "--device",
        device,
        "--threads",
        str(threads),
    ]
    env = {**os.environ, **MMAP_THRESHOLD_ENV}
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1]
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory worker {key} {side} failed:\n{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["peak"]


def _ms(times: list[float]) -> float:
    return statistics.median(times) * 1e3


def _verdict(value: float | None, target: float | None, at_least: bool) -> str:
    if target is None or value is None:
        return ""
    held = value >= target if at_least else value <= target
    return f"{'>=' if at_least else '<='} {target:g} {'held' if held else 'MISSED'}"


def format_table(results: list[dict]) -> str:
    head = (
        "| what | official train ms | ours train ms | speed-up | target | official infer ms | "
        "ours infer ms | speed-up | official peak MiB | ours peak MiB | mem ratio | target |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in results:
        row: Row = ROWS[r["key"]]
        t = r["times"]
        train = [_ms(t[f"{s} train"]) for s in SIDES]
        infer = [_ms(t[f"{s} infer"]) for s in SIDES]
        speed = train[0] / train[1]
        peaks = r.get("peaks") or {}
        mem = (peaks["ours"] / peaks["official"]) if peaks.get("ours") and peaks.get("official") else None
        mib = [f"{peaks[s] / MIB:,.0f}" if peaks.get(s) else "n/a" for s in SIDES]
        lines.append(
            f"| {row.label} `{list(row.input_shape)}` | {train[0]:,.1f} | {train[1]:,.1f} | {speed:.2f}x | "
            f"{_verdict(speed, row.speed_target, True)} | {infer[0]:,.1f} | {infer[1]:,.1f} | "
            f"{infer[0] / infer[1]:.2f}x | {mib[0]} | {mib[1]} | {'n/a' if mem is None else f'{mem:.2f}'} | "
            f"{_verdict(mem, row.memory_target, False)} |"
        )
    return "\n".join(lines)


def _load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--official", required=True, help="folder holding Context-Cluster/ and pointMLP-pytorch/"
    )
    parser.add_argument(
        "--models", nargs="+", default=list(ROWS), metavar="ROW", help=f"of {', '.join(ROWS)}"
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps of the model rows")
    parser.add_argument(
        "--module-repeats",
        type=int,
        default=21,
        help="timed steps of the Cluster rows (steps of milliseconds)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="our training step through torch.compile (Inductor, static shapes; the warm-up step compiles); "
        "inference stays eager; implies --no-memory",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--memory-worker", nargs=2, metavar=("ROW", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in ROWS]
    if unknown:
        parser.error(f"unknown row {unknown[0]!r}; rows: {', '.join(ROWS)}")
    if min(args.warmup, args.repeats, args.module_repeats, args.threads) < 1:
        parser.error("--warmup, --repeats, --module-repeats and --threads must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch.cuda.is_available() is False")
    try:
        if args.memory_worker:
            key, side = args.memory_worker
            print(
                json.dumps({"peak": peak_memory_worker(args.official, key, side, args.device, args.threads)})
            )
            return 0
        code = OfficialCode(args.official)
    except (FileNotFoundError, ModuleNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    steady = args.device == "cpu" and steady_heap()
    info = machine_info(args.device)
    print(f"machine: {describe_machine(info)}; float32 {args.device}")
    print(f"load average at start (1/5/15 min): {_load_average()}")
    print(f"official code: {Path(args.official).resolve()}")
    for stand_in in code.stand_ins:
        print(f"stood in for (not importable here): {stand_in}")
    print(
        f"timing: {args.warmup} warm-up + {args.repeats} timed steps per side and mode "
        f"({args.module_repeats} for the Cluster rows), interleaved; "
        "medians"
        + ("; glibc heap held in its settled state (mmap threshold 32 MiB)" if steady else "")
        + ". Peak memory: training step, one fresh process per side."
        + (
            " Ours: training step through torch.compile (static shapes), inference eager."
            if args.compile
            else ""
        )
    )
    meter = OthersCpuMeter()
    results, failed = [], False
    for key in args.models:
        row = ROWS[key]
        pair = build_pair(code, row, args.device)
        diffs = agreement(pair)
        agree = all(d <= AGREEMENT_ATOL for d in diffs.values())
        print(
            f"{key}: max |official - ours| "
            + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
            + ("" if agree else f" > {AGREEMENT_ATOL:g}: NOT TIMED"),
            flush=True,
        )
        if not agree:
            failed = True
            continue
        result = {
            "key": key,
            "agreement": diffs,
            "times": time_row(
                pair,
                row,
                args.warmup,
                args.module_repeats if row.kind == "module" else args.repeats,
                args.device,
                args.compile,
            ),
        }
        del pair
        if not (args.no_memory or args.compile):
            result["peaks"] = {
                s: peak_memory(args.official, key, s, args.device, args.threads) for s in SIDES
            }
        results.append(result)
        print(format_table([result]).splitlines()[-1], flush=True)
    busy = meter.read()
    print()
    print(format_table(results))
    print(f"\nload average at end (1/5/15 min): {_load_average()}")
    print(f"CPUs kept busy by other processes during the run: {'unknown' if busy is None else f'{busy:.0%}'}")
    if args.json is not None:
        args.json.write_text(
            json.dumps({"machine": info, "others_cpu_busy": busy, "rows": results}, indent=2)
        )
        print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
