"""The operator's compiled CPU similarity backward (pointcoc.cluster.native) against its ATen code."""

import shutil
import warnings

import pytest
import torch

from pointcoc.cluster import aggregate_clusters, context_cluster, native, set_pool_matrix
from pointcoc.cluster import op as cluster_op

COMPILER = shutil.which("c++") or shutil.which("g++")


@pytest.fixture(scope="module")
def kernels():
    if COMPILER is None:
        pytest.skip("no C++ compiler here: the operator runs its ATen code (tested everywhere else)")
    built = native.kernels()
    assert built is not None, "a C++ compiler is here, so the kernel must build (see the warning above)"
    return built


@pytest.fixture
def aten_only(monkeypatch):
    """Within the test, the operator takes its ATen code."""

    def use_aten():
        monkeypatch.setattr(native, "kernels", lambda: None)

    return use_aten


def _inputs(b, n, m, d, dtype, given: bool, alpha=1.7, beta=-0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(b, n, d, generator=g, dtype=dtype)
    centers = torch.randn(b, m, d, generator=g, dtype=dtype) if given else None
    return points, centers, torch.tensor([alpha], dtype=dtype), torch.tensor([beta], dtype=dtype)


CASES = [  # (b, n, m, d, center source)
    (6, 49, 4, 24, "pool"),  # an image region: 7x7 points, 2x2 pooled centers
    (5, 24, 1, 32, "mean"),  # a PointMLP-CoC kNN group and its mean
    (3, 20, 5, 7, "given"),
    (2, 9, 3, 5, "pool"),
]


def _pool(n, m, dtype):
    side = int(n**0.5)
    if side * side != n or m not in (3, 4):
        return torch.softmax(torch.randn(m, n, generator=torch.Generator().manual_seed(3)), -1).to(dtype)
    return set_pool_matrix((side, side), (2, 2) if m == 4 else (3, 1), dtype, torch.device("cpu"))


def _backward(inputs, grad_sim, pool, pooled):
    points, centers, alpha, beta = inputs
    sim, assignment, cos_chosen, p_len, c_hat, c_len = cluster_op._assign(points, centers, pool, alpha, beta)
    return cluster_op._assign_backward(
        grad_sim.clone(), sim, cos_chosen, p_len, points, c_hat, c_len, assignment, alpha, beta.dtype, pool,
        pooled, True,
    )  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES)
def test_similarity_backward_matches_the_aten_code(kernels, aten_only, case, dtype):
    b, n, m, d, source = case
    inputs = _inputs(b, n, m, d, dtype, given=source == "given")
    pool = _pool(n, m, dtype) if source == "pool" else None
    grad_sim = torch.randn(b, n, dtype=dtype)
    got = _backward(inputs, grad_sim, pool, source != "given")
    aten_only()
    want = _backward(inputs, grad_sim, pool, source != "given")
    assert (got[1] is None) == (want[1] is None) == (source != "given")
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for a, w in zip(got, want):
        if w is not None:
            assert a.dtype == w.dtype or a.dim() == 0
            torch.testing.assert_close(a.to(w.dtype), w, **tol)


@pytest.mark.parametrize("groups", [1, 8])
def test_region_operator_values_and_gradients_match_the_aten_code(kernels, aten_only, groups):
    # the image mixers' training call: head-major sets sharing the region's values, pooled grid centers
    sets, n, d, e = 2 * groups, 49, 24, 10
    g = torch.Generator().manual_seed(1)
    points = torch.randn(sets, n, d, generator=g, dtype=torch.float64)
    values = torch.randn(sets // groups, n, e, generator=g, dtype=torch.float64)
    scalars = [torch.tensor([2.1], dtype=torch.float64), torch.tensor([0.4], dtype=torch.float64)]
    pool = set_pool_matrix((7, 7), (2, 2), torch.float64, torch.device("cpu"))
    grad_out = torch.randn(sets, 4, e, generator=g, dtype=torch.float64)

    def run():
        leaves = [t.clone().requires_grad_() for t in (points, values, *scalars)]
        out = aggregate_clusters(
            leaves[0], leaves[1], None, None, *leaves[2:], groups=groups, center_pool=pool
        )
        out.aggregated.backward(grad_out)
        return (out.aggregated.detach(), out.assignment, *(t.grad for t in leaves))

    got = run()
    aten_only()
    torch.testing.assert_close(got, run(), rtol=1e-11, atol=1e-12)


def test_point_operator_gradcheck_through_the_kernels(kernels):
    g = torch.Generator().manual_seed(2)
    inputs = [torch.randn(*s, generator=g, dtype=torch.float64) for s in ((3, 6, 4), (3, 6, 3), (3, 2, 4))]
    inputs += [
        torch.randn(3, 2, 3, generator=g, dtype=torch.float64),
        torch.tensor([1.4], dtype=torch.float64),
    ]
    inputs += [torch.tensor([-0.2], dtype=torch.float64)]
    inputs = [t.requires_grad_() for t in inputs]
    assert torch.autograd.gradcheck(lambda *t: context_cluster(*t).out, inputs)


def test_zero_vectors_and_nans_behave_as_the_aten_code(kernels, aten_only):
    inputs = _inputs(2, 10, 3, 5, torch.float64, given=True)
    points, centers = inputs[:2]
    points[0, 3] = 0.0  # below F.normalize's eps: no radial gradient
    centers[0, 2] = 0.0
    points[1, 4, 2] = float("nan")
    grad_sim = torch.randn(2, 10, dtype=torch.float64)
    got = _backward(inputs, grad_sim, None, False)
    aten_only()
    want = _backward(inputs, grad_sim, None, False)
    # set 0 (zero vectors) alike; set 1 NaN at the NaN point either way (ATen's dense products also spread it
    # into the other centers' rows)
    for a, w in zip(got[:2], want[:2]):
        assert a[0].isfinite().all()
        torch.testing.assert_close(a[0], w[0], rtol=1e-12, atol=1e-12)
    assert got[0][1, 4].isnan().all() and want[0][1, 4].isnan().all()


def test_disabled_or_unbuildable_kernels_leave_the_aten_code(monkeypatch, aten_only):
    monkeypatch.setenv(native.ENV, "0")
    assert native.build() is None
    monkeypatch.delenv(native.ENV)

    def broken(**_):
        raise RuntimeError("Error building extension 'pointcoc_similarity'\ncompiler output ...")

    monkeypatch.setattr("torch.utils.cpp_extension.load", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert native.build() is None
    (warning,) = [w for w in caught if "pointcoc" in str(w.message)]
    assert "Error building extension 'pointcoc_similarity'" in str(warning.message)
    assert "compiler output" not in str(warning.message) and native.ENV in str(warning.message)
    aten_only()  # what the operator then runs
    assert not native.applies(torch.ones(1, 2, 3))
    context_cluster(*[t.requires_grad_() for t in _four(torch.float32)]).out.sum().backward()


def _four(dtype):
    points, centers, alpha, beta = _inputs(2, 6, 2, 4, dtype, given=True)
    values = torch.randn(2, 6, 3, dtype=dtype)
    return points, values, centers, torch.randn(2, 2, 3, dtype=dtype), alpha, beta


def test_other_dtypes_and_devices_take_the_aten_code(kernels):
    assert native.applies(torch.ones(1, 2, 3)) and native.applies(torch.ones(1, 2, 3, dtype=torch.float64))
    assert not native.applies(torch.ones(1, 2, 3, dtype=torch.bfloat16))
    assert not native.applies(torch.ones(1, 2, 3, device="meta"))
    # alpha and beta in another dtype than the points: ATen would promote the gradient chain to theirs
    points = torch.ones(1, 2, 3)
    assert cluster_op._native(points, torch.float64, torch.float32) is None
    assert cluster_op._native(points, torch.float32, torch.float32) is native.kernels() is not None
