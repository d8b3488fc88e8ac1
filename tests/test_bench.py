"""``main.py bench`` (:mod:`benchmarks.model_bench`), the measuring helpers in :mod:`pointcoc.utils.measure`
and the benchmarks' operator swap: output format and correctness only (speed itself is shown by the benchmark
scripts, never asserted here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import main
import pointcoc
from benchmarks.model_bench import default_optimizer
from benchmarks.models_vs_naive import VARIANTS, in_variant, naive_ops, official_fps, profile_breakdown
from pointcoc.cluster import context_cluster
from pointcoc.cluster.reference import context_cluster_naive
from pointcoc.layers import ClusterMixer
from pointcoc.ops import farthest_point_sample
from pointcoc.utils import measure
from pointcoc.utils.flops import count_macs

LINE = re.compile(r"^(\S+)\s+(.*)$")
RATE = re.compile(r"^([\d,.]+) samples/s \(median ([\d.]+) ms/step, min ([\d.]+) ms\)")
PEAK = re.compile(r"^([\d,.]+) MiB \(")


def run_bench(capsys, *args: str) -> dict[str, str]:
    assert main.main(["bench", *args, "--warmup", "1", "--repeats", "2"]) == 0
    fields = dict(LINE.match(line).groups() for line in capsys.readouterr().out.strip().splitlines())
    for mode in ("infer", "train"):
        rate, median, minimum = RATE.match(fields[mode]).groups()
        assert float(rate.replace(",", "")) > 0 and float(minimum) <= float(median)
    return fields


def test_bench_point_model_reports_every_field(capsys):
    fields = run_bench(capsys, "--model", "pointmlp_coc_elite", "--batch", "2", "--points", "256")
    model = pointcoc.create_model("pointmlp_coc_elite", num_points=256)
    params = sum(p.numel() for p in model.parameters())
    macs, _ = count_macs(model, model.example_input(1))
    assert fields["model"] == "pointmlp_coc_elite"
    assert fields["input"] == "[2, 256, 3] (batch 2)"
    assert (fields["device"], fields["precision"], fields["compile"]) == ("cpu", "fp32", "off")
    assert fields["parameters"].startswith(f"{params:,} ")
    assert fields["MACs"].startswith(f"{macs:,} ")
    assert "torch threads" in fields["machine"] and torch.__version__ in fields["machine"]
    assert fields["train"].endswith("[forward + backward + optimizer step]")
    if measure.CLEAR_REFS.exists():  # Linux: both peaks measured, the training step's the larger
        infer, train = (
            float(PEAK.match(fields[k]).group(1).replace(",", "")) for k in ("peak_infer", "peak_train")
        )
        assert 0 < infer < train


def test_bench_measures_peaks_with_mapped_buffers_and_times_on_the_settled_heap(capsys, monkeypatch):
    """The peaks need every buffer its own mapping (RSS tracks live tensors); timing under that setting
    would page-fault every buffer in at every step (coc_tiny's CPU training step: 1133 instead of 608 ms)."""
    import benchmarks.model_bench as model_bench

    events: list[str] = []
    for name in ("fix_mmap_threshold", "steady_heap", "step_peak", "interleaved_times"):
        real = getattr(model_bench, name)
        monkeypatch.setattr(
            model_bench, name, lambda *a, _real=real, _name=name, **k: events.append(_name) or _real(*a, **k)
        )
    try:
        run_bench(capsys, "--model", "pointmlp_coc_elite", "--batch", "2", "--points", "256")
    finally:
        measure.fix_mmap_threshold()  # the setting the other memory tests expect
    assert events == ["fix_mmap_threshold", "step_peak", "step_peak", "steady_heap", "interleaved_times"]


def test_bench_image_model_bf16_channels_last(capsys):
    fields = run_bench(
        capsys,
        "--model",
        "coc_tiny",
        "--batch",
        "1",
        "--size",
        "64",
        "--precision",
        "bf16",
        "--channels-last",
    )
    assert fields["input"] == "[1, 3, 64, 64] (batch 1)"
    assert (fields["precision"], fields["channels_last"]) == ("bf16", "on")


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--model", "coc_tiny", "--points", "256"],
            "points applies to point models; coc_tiny is an image model",
        ),
        (
            ["--model", "pointmlp_elite", "--size", "64"],
            "apply to image models; pointmlp_elite is a point model",
        ),
        (["--model", "pointmlp_elite", "--batch", "0"], "batch must be >= 1"),
        (["--model", "pointmlp_cox"], "unknown model 'pointmlp_cox'"),
        (["--model", "pointmlp_elite", "--device", "tpu"], "device must be 'cpu' or 'cuda'"),
    ],
)
def test_bench_bad_arguments_are_one_line_errors(capsys, args, message):
    assert main.main(["bench", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_bench_cuda_without_cuda_is_an_error(capsys):
    assert main.main(["bench", "--model", "pointmlp_elite", "--device", "cuda"]) == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err


def test_interleaved_times_alternate_and_count():
    calls: list[str] = []
    times = measure.interleaved_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 1, 4)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert [len(t) for t in times.values()] == [4, 4] and min(min(t) for t in times.values()) >= 0


def test_train_step_updates_weights_and_infer_step_does_not():
    model = pointcoc.create_model("pointmlp_elite", num_points=256)
    x, y = model.example_input(2), torch.tensor([0, 1])
    before = [p.detach().clone() for p in model.parameters()]
    measure.make_infer_step(model, x)()
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    loss = measure.make_train_step(model, x, y, default_optimizer(model))()
    assert torch.isfinite(loss) and model.training
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


@pytest.mark.skipif(not measure.CLEAR_REFS.exists(), reason="needs /proc/self/clear_refs (Linux)")
def test_rss_growth_sees_a_step_allocation():
    assert measure.fix_mmap_threshold()
    growth = measure.rss_growth(lambda: torch.ones(16 * 1024 * 1024).sum())  # 64 MiB, freed at once
    assert growth is not None and 60 * measure.MIB <= growth < 200 * measure.MIB


ROOT = Path(__file__).resolve().parents[1]
_HEAP_CHECK = """
import resource, torch
from pointcoc.utils import measure

def faults(cycles=20):  # minor page faults of allocating, touching and freeing a 4 MiB buffer
    torch.ones(1 << 20).sum()  # the first cycle may grow the heap
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(cycles):
        torch.ones(1 << 20).sum()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

assert measure.fix_mmap_threshold()
mapped = faults()
assert measure.steady_heap()
print(mapped, faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt (Linux)")
def test_steady_heap_reuses_buffers_that_the_memory_setting_maps_anew():
    # a fresh process: a heap that earlier tests grew would serve the buffers without mapping them
    done = subprocess.run(
        [sys.executable, "-c", _HEAP_CHECK], capture_output=True, text=True, check=True, cwd=ROOT
    )
    mapped, reused = (int(n) for n in done.stdout.split())
    assert mapped >= 20 and reused <= 5, (mapped, reused)


def test_tensor_bytes_counts_shared_storage_once():
    t = torch.zeros(1000)
    assert measure.tensor_bytes([t, t[:10], t.view(10, 100)]) == 4000


def test_machine_description_names_cpu_torch_and_thread_waiting(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    text = measure.describe_machine(measure.machine_info("cpu"))
    assert f"torch {torch.__version__}" in text and "CPUs" in text and "GPU" not in text
    assert "OMP_WAIT_POLICY PASSIVE" in text


def _ops(model: torch.nn.Module) -> list[object]:
    mixers = [m.cluster_op for m in model.modules() if isinstance(m, ClusterMixer)]
    return mixers + [m.fps_op for m in model.modules() if hasattr(m, "fps_op")]


@pytest.mark.parametrize("name", ["pointmlp_coc_elite", "pointset_coc_vanilla"])
def test_naive_ops_swap_every_operator_through_its_attribute_and_restore_it(name):
    model = pointcoc.create_model(name, num_points=256).eval()
    ours = _ops(model)
    assert context_cluster in ours and farthest_point_sample in ours and len(ours) >= 3
    x = model.example_input(2)
    with torch.no_grad():
        expected = model(x)
        with naive_ops(model):
            assert set(_ops(model)) == {context_cluster_naive, official_fps}
            naive = model(x)
    assert _ops(model) == ours
    torch.testing.assert_close(naive, expected, atol=1e-5, rtol=1e-4)


def test_official_fps_refuses_the_kernel_skip_it_does_not_have():
    with pytest.raises(ValueError, match="has no skip_near_origin"):
        official_fps(torch.rand(1, 8, 3), 2, skip_near_origin=True)


def test_profile_labels_every_operator_of_both_variants():
    model = pointcoc.create_model("pointset_coc_vanilla", num_points=128)
    x, y = model.example_input(2), torch.tensor([0, 1])
    step = measure.make_train_step(model, x, y, default_optimizer(model))
    for variant in VARIANTS:
        parts = in_variant(variant, model, lambda: profile_breakdown(step))()
        for label in ("FPS", "kNN", "gather", "cluster operator", "backward (all)"):
            assert 0 < parts[label] < parts["step"], (variant, label)
