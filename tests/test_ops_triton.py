"""Fast paths of the point-set ops: the Triton FPS kernel, the torch FPS loop and the official loop agree
exactly, and the row-wise gather rejects indices that would read a neighbouring cloud.

The kernel runs natively where CUDA exists, and everywhere triton is installed through Triton's CPU
interpreter (``TRITON_INTERPRET=1``, which must be set before triton is imported, hence a subprocess).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pointcoc.ops import backends, farthest_point_sample, gather_points, knn_points
from pointcoc.ops.reference import farthest_point_sample_naive, farthest_point_sample_official

REPO = Path(__file__).resolve().parents[1]
HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_cuda_triton = pytest.mark.skipif(
    not (torch.cuda.is_available() and backends.triton_fps() is not None), reason="needs CUDA and triton"
)

# (batch, points, dims, samples); the 3000-point clouds exceed the kernel's register tile and take its
# blocked path, duplicated points check the tie-breaking (first maximum wins).
INTERPRETER_SCRIPT = textwrap.dedent(
    """
    import json
    import torch
    from pointcoc.ops import farthest_point_sample
    from pointcoc.ops.reference import farthest_point_sample_naive

    torch.manual_seed(0)
    clouds = [torch.rand(b, n, d) for b, n, d in [(1, 16, 3), (3, 50, 3), (2, 40, 5), (2, 3000, 3)]]
    clouds += [torch.rand(2, 64, 2, dtype=torch.float64), torch.rand(2, 60, 3)[:, ::2]]
    clouds += [torch.rand(2, 15, 3).repeat(1, 3, 1)]
    samples = [5, 17, 40, 6, 8, 10, 30]
    results = []
    for pts, s in zip(clouds, samples):
        triton_idx = farthest_point_sample(pts, s, backend="triton")
        results.append({
            "shape": list(pts.shape),
            "torch": torch.equal(triton_idx, farthest_point_sample(pts, s, backend="torch")),
            "naive": pts.shape[1] > 100 or torch.equal(triton_idx, farthest_point_sample_naive(pts, s)),
        })
    for n in (50, 3000):  # pointnet2_ops' near-origin skip and tie order, resident and blocked paths
        pts = torch.rand(2, n, 3) * 2 - 1
        pts[:, ::3] *= 0.02
        pts[1, n // 2 :] = pts[1, : n - n // 2]
        triton_idx = farthest_point_sample(pts, 40, backend="triton", skip_near_origin=True)
        torch_idx = farthest_point_sample(pts, 40, backend="torch", skip_near_origin=True)
        results.append({"shape": [2, n, 3], "torch": torch.equal(triton_idx, torch_idx), "naive": True})
    print(json.dumps(results))
    """
)


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_triton_kernel_matches_reference_in_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", INTERPRETER_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == 9
    for r in results:
        assert r["torch"] and r["naive"], r


@pytest.mark.parametrize("b,n,d,s", [(2, 50, 3, 20), (3, 1024, 3, 512), (2, 200, 5, 64)])
def test_official_loop_and_torch_path_agree(b, n, d, s):
    pts = torch.rand(b, n, d)
    assert torch.equal(farthest_point_sample(pts, s, backend="torch"), farthest_point_sample_official(pts, s))


def test_torch_path_handles_noncontiguous_and_one_sample():
    pts = torch.rand(2, 80, 3)[:, ::2]
    assert torch.equal(farthest_point_sample(pts, 12, backend="torch"), farthest_point_sample_naive(pts, 12))
    assert torch.equal(farthest_point_sample(pts, 1, backend="torch"), torch.zeros(2, 1, dtype=torch.long))


def test_auto_backend_keeps_cpu_tensors_off_triton(monkeypatch):
    monkeypatch.setattr(backends, "pytorch3d_ops", lambda: None)
    assert backends.fps_backend("auto", torch.rand(1, 8, 3)) == "torch"


def test_triton_backend_errors_name_the_problem(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    pts = torch.rand(1, 8, 3)
    if backends.triton_fps() is None:
        match = "triton is not importable"
    else:
        match = "needs CUDA tensors"
    with pytest.raises(ValueError, match=match):
        farthest_point_sample(pts, 2, backend="triton")
    with pytest.raises(ValueError, match="exists only for farthest_point_sample"):
        knn_points(pts, pts, 2, backend="triton")


@pytest.mark.parametrize("bad", [-1, 7])
def test_gather_rejects_indices_outside_the_cloud(bad):
    idx = torch.tensor([[0, 1], [bad, 2]])
    with pytest.raises(ValueError, match=r"idx must lie in \[0, 7\)"):
        gather_points(torch.rand(2, 7, 3), idx)


@needs_cuda_triton
@pytest.mark.parametrize(
    "b,n,d,s",
    [(1, 16, 3, 16), (4, 1024, 3, 512), (32, 1024, 3, 512), (3, 5000, 3, 1000), (2, 100_000, 3, 256),
     (2, 3136, 5, 64), (8, 300, 2, 300)],
)  # fmt: skip
def test_triton_kernel_matches_reference_on_cuda(b, n, d, s):
    pts = torch.rand(b, n, d, device="cuda")
    assert backends.fps_backend("auto", pts) == "triton"
    idx = farthest_point_sample(pts, s)
    assert idx.device.type == "cuda" and idx.dtype == torch.long and idx.shape == (b, s)
    assert torch.equal(idx, farthest_point_sample(pts, s, backend="torch"))
    assert torch.equal(idx.cpu(), farthest_point_sample(pts.cpu(), s, backend="torch"))
    assert torch.equal(idx, farthest_point_sample_official(pts, s))


@needs_cuda_triton
def test_triton_kernel_float64_and_ties_on_cuda():
    pts = torch.rand(3, 700, 3, device="cuda", dtype=torch.float64)
    assert torch.equal(farthest_point_sample(pts, 100), farthest_point_sample(pts, 100, backend="torch"))
    tied = torch.rand(2, 40, 3, device="cuda").repeat(1, 4, 1)
    assert torch.equal(farthest_point_sample(tied, 100), farthest_point_sample(tied, 100, backend="torch"))
