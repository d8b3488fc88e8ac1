import sys
import types

import pytest
import torch

from pointcoc.ops import (
    backends,
    farthest_point_sample,
    gather_points,
    gather_points_shifted,
    gather_points_sum,
    knn_points,
    square_distance,
)
from pointcoc.ops.reference import (
    farthest_point_sample_naive,
    gather_points_naive,
    gather_points_shifted_naive,
    gather_points_sum_naive,
    knn_points_naive,
)


@pytest.mark.parametrize("b,n,d,s", [(1, 16, 3, 5), (3, 50, 3, 17), (2, 40, 5, 40), (2, 64, 2, 8)])
def test_fps_matches_naive(b, n, d, s):
    pts = torch.rand(b, n, d)
    idx = farthest_point_sample(pts, s, backend="torch")
    assert idx.shape == (b, s) and idx.dtype == torch.long
    assert torch.equal(idx, farthest_point_sample_naive(pts, s))
    assert (idx[:, 0] == 0).all()
    assert all(len(set(row.tolist())) == s for row in idx)  # never resamples a point


def test_fps_float64_and_device_follow_input():
    pts = torch.rand(2, 30, 3, dtype=torch.float64)
    assert torch.equal(farthest_point_sample(pts, 10), farthest_point_sample_naive(pts, 10))


@pytest.mark.parametrize("b,s,n,d,k", [(1, 4, 20, 3, 1), (2, 16, 60, 3, 8), (2, 7, 33, 5, 33)])
def test_knn_matches_naive(b, s, n, d, k):
    pts, queries = torch.rand(b, n, d), torch.rand(b, s, d)
    idx = knn_points(queries, pts, k, backend="torch")
    assert idx.shape == (b, s, k)
    assert torch.equal(idx, knn_points_naive(queries, pts, k))


def test_knn_of_a_point_in_the_set_is_itself():
    pts = torch.rand(2, 40, 3)
    idx = knn_points(pts, pts, 1)
    assert torch.equal(idx[..., 0], torch.arange(40).expand(2, 40))


def test_square_distance_equals_cdist():
    a, b = torch.rand(2, 9, 5, dtype=torch.float64), torch.rand(2, 13, 5, dtype=torch.float64)
    torch.testing.assert_close(square_distance(a, b), torch.cdist(a, b) ** 2)


@pytest.mark.parametrize("idx_shape", [(3, 7), (3, 4, 5)])
def test_gather_matches_naive_and_backprops(idx_shape):
    pts = torch.rand(3, 11, 6, requires_grad=True)
    idx = torch.randint(0, 11, idx_shape)
    out = gather_points(pts, idx)
    assert out.shape == (*idx_shape, 6)
    torch.testing.assert_close(out, gather_points_naive(pts, idx))
    out.sum().backward()
    expected = torch.zeros(3, 11).scatter_add_(1, idx.reshape(3, -1), torch.ones(idx.reshape(3, -1).shape))
    torch.testing.assert_close(pts.grad, expected.unsqueeze(-1).expand(-1, -1, 6))


@pytest.mark.parametrize(
    "op, naive", [(gather_points_sum, gather_points_sum_naive), (gather_points_shifted, None)]
)
def test_group_gathers_match_naive_values_and_grads(op, naive):
    g = torch.Generator().manual_seed(0)
    points = torch.randn(3, 11, 5, dtype=torch.float64, generator=g)
    idx = torch.randint(0, 11, (3, 4, 6), generator=g)
    shift = torch.randn(3, 4, 5, dtype=torch.float64, generator=g)
    args = (shift,) if naive is None else ()
    naive = naive or gather_points_shifted_naive
    inputs = [points, *args]
    grads = []
    for fn in (op, naive):
        leaves = [t.clone().requires_grad_() for t in inputs]
        out = fn(leaves[0], idx, *leaves[1:])
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape))
        grads.append((out.detach(), *(t.grad for t in leaves)))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"idx must lie in \[0, 11\)"):
        op(points, idx + 11, *args)
    with pytest.raises(ValueError, match=r"\[B, S, K\]"):
        op(points, idx[:, 0], *args)


@pytest.fixture
def fake_pytorch3d(monkeypatch):
    """A stand-in pytorch3d.ops that records calls and answers with our own torch results."""
    calls = []

    def sample_farthest_points(points, K, random_start_point):
        calls.append(("fps", random_start_point))
        return None, farthest_point_sample(points, K, backend="torch")

    def knn(p1, p2, K, return_sorted):
        calls.append(("knn", return_sorted))
        return types.SimpleNamespace(idx=knn_points(p1, p2, K, backend="torch"))

    ops = types.SimpleNamespace(sample_farthest_points=sample_farthest_points, knn_points=knn)
    monkeypatch.setitem(sys.modules, "pytorch3d", types.ModuleType("pytorch3d"))
    monkeypatch.setitem(sys.modules, "pytorch3d.ops", ops)
    backends.pytorch3d_ops.cache_clear()
    yield calls
    backends.pytorch3d_ops.cache_clear()


def test_auto_backend_uses_pytorch3d_when_importable(fake_pytorch3d):
    pts = torch.rand(2, 30, 3)
    farthest_point_sample(pts, 5)
    knn_points(pts[:, :4], pts, 3)
    assert fake_pytorch3d == [("fps", False), ("knn", True)]
    farthest_point_sample(pts, 5, backend="torch")
    assert len(fake_pytorch3d) == 2


def test_explicit_pytorch3d_backend_without_pytorch3d(monkeypatch):
    monkeypatch.setattr(backends, "pytorch3d_ops", lambda: None)
    with pytest.raises(ValueError, match="pytorch3d is not importable"):
        farthest_point_sample(torch.rand(1, 8, 3), 2, backend="pytorch3d")
    with pytest.raises(ValueError, match="backend must be one of"):
        knn_points(torch.rand(1, 2, 3), torch.rand(1, 8, 3), 2, backend="cuda")


@pytest.mark.skipif(backends.pytorch3d_ops() is None, reason="pytorch3d not installed")
def test_pytorch3d_agrees_with_torch_path():
    pts = torch.rand(4, 500, 3)
    assert torch.equal(farthest_point_sample(pts, 64, "pytorch3d"), farthest_point_sample(pts, 64, "torch"))
    q = pts[:, :50]
    assert torch.equal(knn_points(q, pts, 16, "pytorch3d"), knn_points(q, pts, 16, "torch"))


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda: farthest_point_sample(torch.rand(10, 3), 2),
            r"points must have shape \[B, N, D\], got \[10, 3\]",
        ),
        (lambda: farthest_point_sample(torch.rand(1, 10, 3), 11), "num_samples=11 exceeds the 10 points"),
        (lambda: farthest_point_sample(torch.rand(1, 10, 3), 0), "num_samples must be >= 1"),
        (
            lambda: knn_points(torch.rand(1, 2, 3), torch.rand(1, 5, 2), 2),
            r"points must have shape \[B, N, 3\]",
        ),
        (lambda: knn_points(torch.rand(2, 2, 3), torch.rand(1, 5, 3), 2), "share the batch size"),
        (lambda: knn_points(torch.rand(1, 2, 3), torch.rand(1, 5, 3), 6), "k=6 exceeds the 5 points"),
        (
            lambda: gather_points(torch.rand(5, 3), torch.zeros(5, 2, dtype=torch.long)),
            r"points must have shape",
        ),
    ],
)
def test_bad_arguments_name_themselves(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_knn_under_autocast_equals_float32(dtype):
    torch.manual_seed(0)
    points = torch.rand(2, 1024, 3)
    queries = points[:, :512]
    expected = knn_points(queries, points, 24, backend="torch")
    with torch.autocast("cpu", dtype=dtype):
        got = knn_points(queries, points, 24, backend="torch")
        half_matmul = torch.baddbmm(
            (queries**2).sum(-1, keepdim=True), queries, points.transpose(1, 2), alpha=-2.0
        )
        dist = square_distance(queries, points)
    assert torch.equal(got, expected) and dist.dtype == torch.float32
    # Without the float32 guard the neighbour sets do change: the check above can fail.
    assert half_matmul.dtype == dtype
    lossy_dist = half_matmul.float() + (points**2).sum(-1).unsqueeze(1)
    lossy = lossy_dist.topk(24, dim=-1, largest=False).indices.sort(-1).values
    assert (lossy != expected.sort(-1).values).any()
