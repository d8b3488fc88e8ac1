import pytest
import torch
from conftest import load_fixture
from torch.utils._python_dispatch import TorchDispatchMode

from pointcoc.cluster import ClusterResult, context_cluster
from pointcoc.cluster.reference import context_cluster_naive
from pointcoc.compat import official_model


def make_inputs(b=3, n=20, m=4, d=6, e=5, dtype=torch.float32, alpha=1.3, beta=-0.2):
    g = torch.Generator().manual_seed(1)
    tensors = [
        torch.randn(*s, generator=g, dtype=dtype) for s in ((b, n, d), (b, n, e), (b, m, d), (b, m, e))
    ]
    scalars = [torch.tensor([alpha], dtype=dtype), torch.tensor([beta], dtype=dtype)]
    return [t.requires_grad_() for t in tensors + scalars]


def grads(fn, inputs, grad_out, aggregation="similarity"):
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    result = fn(*inputs, aggregation=aggregation)
    result.out.backward(grad_out)
    return result, [t.grad for t in inputs]


AGGREGATIONS = ["similarity", "count"]
# Image shapes: coc_tiny stage 0 with 8x8 regions (a 7x7 region of 49 points, 2x2 centers, head_dim 24) and
# coc_tiny_plain stage 2 (14x14 = 196 points, 2x2 centers); point shapes: a PointMLP-CoC kNN group (24
# points, the one group-mean center, head_dim 32) and a point-set CoC stage (256 points, 16 centers).
SHAPES = [
    dict(),
    dict(m=1),
    dict(b=1, n=1, m=3),
    dict(b=2, n=50, m=16, d=24, e=24),
    dict(b=4, n=49, m=4, d=24, e=24),
    dict(b=2, n=196, m=4, d=24, e=24),
    dict(b=6, n=24, m=1, d=32, e=32),
    dict(b=2, n=256, m=16, d=16, e=16),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("alpha", [1.3, -0.7])
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_fast_matches_naive_values_and_grads(shape, alpha, aggregation):
    inputs = make_inputs(**shape, alpha=alpha)
    grad_out = torch.randn(inputs[1].shape)
    fast, fast_grads = grads(context_cluster, inputs, grad_out, aggregation)
    naive, naive_grads = grads(context_cluster_naive, inputs, grad_out, aggregation)
    torch.testing.assert_close(fast.out, naive.out, atol=1e-6, rtol=1e-5)
    assert torch.equal(fast.assignment, naive.assignment)
    torch.testing.assert_close(fast.similarity, naive.similarity)
    for name, a, b in zip(
        ("points", "values", "centers", "value_centers", "alpha", "beta"), fast_grads, naive_grads
    ):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=f"gradient of {name}")


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("path", ["index", "dense"])
@pytest.mark.parametrize("shape", [dict(), dict(m=1), dict(b=5, n=49, m=4, d=24, e=24)])
def test_each_path_matches_naive_values_and_grads(path, shape, aggregation):
    inputs = make_inputs(**shape)
    grad_out = torch.randn(inputs[1].shape)
    fast, fast_grads = grads(
        lambda *x, **kw: context_cluster(*x, **kw, path=path), inputs, grad_out, aggregation
    )
    naive, naive_grads = grads(context_cluster_naive, inputs, grad_out, aggregation)
    torch.testing.assert_close(fast.out, naive.out, atol=1e-6, rtol=1e-5)
    assert torch.equal(fast.assignment, naive.assignment)
    for name, a, b in zip(
        ("points", "values", "centers", "value_centers", "alpha", "beta"), fast_grads, naive_grads
    ):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=f"gradient of {name}")


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("m,grad,dense", [(4, True, True), (4, False, False), (17, True, False)])
def test_auto_path_is_dense_only_for_training_with_few_centers(m, grad, dense):
    inputs = make_inputs(m=m)
    with torch.set_grad_enabled(grad), _Ops() as ops:
        context_cluster(*inputs)
    assert ("index_add" in ops.names) != dense
    assert ("baddbmm" in ops.names) == dense


def test_unknown_path_is_refused():
    with pytest.raises(ValueError, match="path must be one of"):
        context_cluster(*make_inputs(), path="sparse")


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_equations_on_a_hand_sized_example(aggregation):
    points = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]]])
    values = torch.tensor([[[1.0], [2.0], [3.0]]])
    centers = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    value_centers = torch.tensor([[[10.0], [20.0]]])
    res = context_cluster(points, values, centers, value_centers, torch.ones(1), torch.zeros(1), aggregation)
    s = torch.sigmoid(torch.tensor([1.0, 1.0, 1.0 / (1.01**0.5)]))
    assert res.assignment.tolist() == [[0, 1, 0]]
    # "similarity": divided by the members' similarities + 1; "count" (official mask.sum): by their number + 1
    den0, den1 = (s[0] + s[2] + 1, s[1] + 1) if aggregation == "similarity" else (3.0, 2.0)
    g0 = (s[0] * 1 + s[2] * 3 + 10) / den0
    g1 = (s[1] * 2 + 20) / den1
    torch.testing.assert_close(res.out[0, :, 0], torch.stack([s[0] * g0, s[1] * g1, s[2] * g0]))


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
# several centers with regions of points; one center (a kNN group around its mean, as in PointMLP-CoC)
@pytest.mark.parametrize("shape", [dict(b=2, n=7, m=3, d=4, e=3), dict(b=3, n=8, m=1, d=5, e=4)])
def test_gradcheck_float64(aggregation, shape):
    inputs = make_inputs(**shape, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda *x: context_cluster(*x, aggregation=aggregation).out, inputs)
    assert torch.autograd.gradcheck(lambda *x: context_cluster_naive(*x, aggregation=aggregation).out, inputs)


def test_the_normalisers_differ_and_a_typo_is_refused():
    inputs = [t.detach() for t in make_inputs()]
    similarity = context_cluster(*inputs).out
    count = context_cluster(*inputs, aggregation="count").out
    assert (similarity - count).abs().max() > 1e-2
    for fn in (context_cluster, context_cluster_naive):
        with pytest.raises(ValueError, match="aggregation must be one of .*'mask'"):
            fn(*inputs, aggregation="mask")


class _MaxNumel(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_never_materialises_batch_centers_points_dim():
    b, n, m, d = 4, 64, 8, 16
    inputs = make_inputs(b=b, n=n, m=m, d=d, e=d)
    with _MaxNumel() as fast:
        context_cluster(*inputs).out.sum().backward()
    with _MaxNumel() as naive:
        context_cluster_naive(*inputs).out.sum().backward()
    assert naive.largest >= b * m * n * d  # the official formula does
    assert fast.largest <= b * n * d  # ours stays at the size of its inputs


def test_official_cluster_fixture_outputs_and_gradients():
    fx = load_fixture("cluster_op.pt")
    model = official_model(fx["builder"], fx["kwargs"], fx["state_dict"])
    x = fx["input"].clone().requires_grad_()
    y = model(x)
    torch.testing.assert_close(y, fx["output"], atol=1e-5, rtol=1e-4)
    y.backward(fx["grad_output"])
    torch.testing.assert_close(x.grad, fx["grad_input"], atol=1e-5, rtol=1e-4)
    params = dict(model.named_parameters())
    assert set(params) == set(fx["grad_params"])
    for name, grad in fx["grad_params"].items():
        torch.testing.assert_close(params[name].grad, grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize(
    "field,shape,match",
    [
        ("points", (3, 20), r"points must have shape \[B, N, D\]"),
        ("values", (3, 19, 5), r"values must have shape \[B, N, E\]"),
        ("centers", (3, 4, 7), r"centers must have shape \[B, M, D\]"),
        ("value_centers", (3, 5, 5), r"value_centers must have shape \[B, M, E\]"),
        ("centers", (3, 0, 6), r"centers must have shape"),
    ],
)
def test_shape_errors_name_the_argument(field, shape, match):
    inputs = dict(zip(("points", "values", "centers", "value_centers", "alpha", "beta"), make_inputs()))
    inputs[field] = torch.randn(shape)
    with pytest.raises(ValueError, match=match):
        context_cluster(**inputs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_is_finite_and_keeps_fp32_assignments(dtype):
    points, values, centers, value_centers, alpha, beta = (
        t.detach() for t in make_inputs(b=4, n=64, m=4, d=8, e=8)
    )
    points[0, 3] = 0.0  # a zero feature vector: fp16 normalisation would divide by zero
    ref = context_cluster(points, values, centers, value_centers, alpha, beta)
    low = context_cluster(
        points.to(dtype), values.to(dtype), centers.to(dtype), value_centers.to(dtype), alpha, beta
    )
    assert low.out.dtype == dtype and torch.isfinite(low.out).all()
    agree = (low.assignment == ref.assignment).float().mean()
    assert agree > 0.97
    torch.testing.assert_close(low.out.float(), ref.out, atol=0.05, rtol=0.05)


def test_bf16_autocast_backward_is_finite():
    inputs = make_inputs(b=2, n=30, m=4, d=8, e=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = context_cluster(*inputs).out
    out.float().sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in inputs)


def test_inductor_compile_matches_eager_values_and_grads():
    # The operator alone through Inductor's C++ backend (forward and the hand-written backward) on tiny
    # CPU tensors; a cold compile of this graph took ~26 s on 2 shared cores.
    inputs = make_inputs(b=2, n=9, m=3, d=4, e=5)
    grad_out = torch.randn(inputs[1].shape)
    compiled = torch.compile(context_cluster, backend="inductor", fullgraph=True)
    eager, eager_grads = grads(context_cluster, inputs, grad_out, "count")
    comp, comp_grads = grads(compiled, inputs, grad_out, "count")
    assert torch.equal(comp.assignment, eager.assignment)
    torch.testing.assert_close(comp.out, eager.out, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(comp.similarity, eager.similarity)
    for name, a, b in zip(
        ("points", "values", "centers", "value_centers", "alpha", "beta"), comp_grads, eager_grads
    ):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=f"gradient of {name}")


@pytest.mark.parametrize("name", ["coc_tiny", "pointmlp_coc", "pointset_coc"])
def test_models_declare_and_use_the_normaliser_they_were_built_with(name):
    import pointcoc
    from pointcoc.layers import ClusterMixer

    default = pointcoc.create_model(name)
    built = pointcoc.create_model(name, aggregation="count")
    assert default.model_cfg.aggregation == "similarity" and built.model_cfg.aggregation == "count"
    mixers = [m for m in built.modules() if isinstance(m, ClusterMixer)]
    assert mixers and all(m.aggregation == "count" for m in mixers)
    built.load_state_dict(default.state_dict())
    x = default.eval().example_input(1)
    with torch.no_grad():
        assert not torch.allclose(default(x), built.eval()(x))
    with pytest.raises(ValueError, match="aggregation must be one of"):
        pointcoc.create_model(name, aggregation="mean")


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("path", ["index", "dense"])
@pytest.mark.parametrize("shape", [dict(), dict(m=1), dict(b=5, n=49, m=4, d=24, e=24)])
def test_aggregate_then_dispatch_is_the_operator(path, shape, aggregation):
    # The split serves callers that map the centers between aggregation and dispatch; with no map between,
    # the two halves must be the operator, forward and backward.
    from pointcoc.cluster import aggregate_clusters, dispatch_to_points

    inputs = make_inputs(**shape, dtype=torch.float64)
    grad_out = torch.randn_like(inputs[1])

    def split(*args, aggregation):
        centers = aggregate_clusters(*args, aggregation=aggregation, path=path)
        return ClusterResult(dispatch_to_points(*centers), centers.assignment, centers.similarity)

    want, want_grads = grads(lambda *a, aggregation: context_cluster(*a, aggregation=aggregation, path=path),
                             inputs, grad_out, aggregation)  # fmt: skip
    got, got_grads = grads(split, inputs, grad_out, aggregation)
    assert torch.equal(got.assignment, want.assignment)
    torch.testing.assert_close(got.out, want.out, rtol=1e-12, atol=1e-12)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("groups", [2, 3])
def test_shared_values_are_the_operator_on_copies(groups, aggregation):
    # groups blocks of sets share values (one region's input for every head): aggregating without the copies
    # and summing the blocks' dispatches must be the operator on per-set copies of the values, summed.
    from pointcoc.cluster import aggregate_clusters, dispatch_to_points

    b, n, m, d, e = 4, 11, 3, 5, 6
    g = torch.Generator().manual_seed(3)
    points, centers = torch.randn(groups * b, n, d, generator=g), torch.randn(groups * b, m, d, generator=g)
    values, value_centers = torch.randn(b, n, e, generator=g), torch.randn(b, m, e, generator=g)
    scalars = [torch.tensor([1.3]), torch.tensor([-0.2])]
    inputs = [t.double().requires_grad_() for t in (points, values, centers, value_centers, *scalars)]
    scale = torch.randn(groups * b, m, 1, dtype=torch.float64, generator=g)  # a map between the halves

    def shared(p, v, c, w, alpha, beta):
        agg = aggregate_clusters(p, v, c, w, alpha, beta, aggregation, groups=groups)
        return dispatch_to_points(agg.aggregated * scale, agg.assignment, agg.similarity, groups=groups)

    def copies(p, v, c, w, alpha, beta):
        copy = lambda t: t.repeat(groups, 1, 1)  # noqa: E731  block i of the sets uses values[i]
        agg = aggregate_clusters(p, copy(v), c, copy(w), alpha, beta, aggregation, path="index")
        return (
            dispatch_to_points(agg.aggregated * scale, agg.assignment, agg.similarity)
            .view(groups, b, n, e)
            .sum(0)
        )

    grad_out = torch.randn(b, n, e, dtype=torch.float64, generator=g)
    got, want = shared(*inputs), copies(*inputs)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for a, w in zip(torch.autograd.grad(got, inputs, grad_out), torch.autograd.grad(want, inputs, grad_out)):
        torch.testing.assert_close(a, w, rtol=1e-10, atol=1e-12)
    few_points = [t.detach()[:, :4].clone().requires_grad_() for t in inputs[:2]]  # points, values
    assert torch.autograd.gradcheck(shared, [*few_points, *inputs[2:]])


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("pooled", [False, True])
def test_pooled_centers_are_the_operator_given_the_pooled_centers(groups, pooled):
    # centers=value_centers=None: pooled from the sets (center_pool, or the mean), their gradients folded
    # into the points' own
    from pointcoc.cluster import aggregate_clusters, set_centers, set_pool_matrix

    p, v, _, _, alpha, beta = make_inputs(b=4, n=12, m=1, dtype=torch.float64)
    v = v.detach()[: 4 // groups].requires_grad_()
    pool = set_pool_matrix((3, 4), (2, 2), torch.float64, torch.device("cpu")) if pooled else None
    grad_out = torch.randn(4, 4 if pooled else 1, v.shape[-1], dtype=torch.float64)

    def centers_of(sets):
        return set_centers(sets, (3, 4), (2, 2)) if pooled else sets.mean(1, keepdim=True)

    def run(inside: bool):
        leaves = [t.detach().clone().requires_grad_() for t in (p, v, alpha, beta)]
        pts, vals = leaves[:2]
        centers = (None, None) if inside else (centers_of(pts), centers_of(vals))
        out = aggregate_clusters(
            pts, vals, *centers, *leaves[2:], groups=groups, center_pool=pool if inside else None
        )
        out.aggregated.backward(grad_out)
        return (out.aggregated.detach(), out.assignment, *(t.grad for t in leaves))

    torch.testing.assert_close(run(True), run(False), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="both be given or both be None"):
        aggregate_clusters(p, v, None, v[:, :1], alpha, beta, groups=groups)
    with pytest.raises(ValueError, match=r"center_pool \[M, N\] pools the centers of 12-point sets"):
        aggregate_clusters(p, v, None, None, alpha, beta, groups=groups, center_pool=torch.ones(2, 5))


@pytest.mark.parametrize("path", ["dense", "index"])
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_mean_centers_inside_the_operator_with_its_dispatch(path, aggregation):
    # context_cluster with centers = value_centers = None: each set's mean, dispatched by the operator itself
    # (the dense path aggregates with the pooling rows inside its weights and dispatches with the plain ones)
    p, v, _, _, alpha, beta = make_inputs(b=3, n=9, m=1, dtype=torch.float64)
    grad_out = torch.randn(3, 9, v.shape[-1], dtype=torch.float64)

    def run(inside: bool):
        leaves = [t.detach().clone().requires_grad_() for t in (p, v, alpha, beta)]
        pts, vals = leaves[:2]
        centers = (None, None) if inside else (pts.mean(1, keepdim=True), vals.mean(1, keepdim=True))
        result = context_cluster(pts, vals, *centers, *leaves[2:], aggregation, path=path)
        result.out.backward(grad_out)
        return (result.out.detach(), result.assignment, *(t.grad for t in leaves))

    torch.testing.assert_close(run(True), run(False), rtol=1e-12, atol=1e-12)


def test_set_pool_matrix_is_set_centers():
    from pointcoc.cluster import set_centers, set_pool_matrix

    sets = torch.randn(6, 7 * 7, 5)
    for proposals in ((2, 2), (4, 4), (1, 3)):
        pool = set_pool_matrix((7, 7), proposals, sets.dtype, sets.device)
        torch.testing.assert_close(pool @ sets, set_centers(sets, (7, 7), proposals))


def test_shared_values_reject_what_they_cannot_take():
    from pointcoc.cluster import aggregate_clusters

    p, v, c, w, alpha, beta = make_inputs(b=4)
    with pytest.raises(ValueError, match="groups must be a positive divisor of the 4 point sets"):
        aggregate_clusters(p, v[:1], c, w[:1], alpha, beta, groups=3)
    with pytest.raises(ValueError, match=r"values must have shape \[B / groups, N, E\]"):
        aggregate_clusters(p, v, c, w[:2], alpha, beta, groups=2)
    with pytest.raises(ValueError, match="dense path"):
        aggregate_clusters(p, v[:2], c, w[:2], alpha, beta, groups=2, path="index")


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("path", ["index", "dense"])
def test_aggregate_clusters_gradcheck_float64(aggregation, path):
    from pointcoc.cluster import aggregate_clusters

    inputs = make_inputs(b=2, n=7, m=3, d=4, e=3, dtype=torch.float64)
    fn = lambda *a: aggregate_clusters(*a, aggregation=aggregation, path=path).aggregated  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)
    # the aggregate is the formula of the module docstring, by hand for one set
    p, v, c, w, alpha, beta = (t.detach() for t in inputs)
    s = torch.sigmoid(beta + alpha * torch.nn.functional.cosine_similarity(p[0, :, None], c[0, None], dim=-1))
    sim, m = s.max(-1)
    g = fn(*inputs)[0]
    for center in range(3):
        members = m == center
        den = 1 + (sim[members].sum() if aggregation == "similarity" else members.sum())
        torch.testing.assert_close(
            g[center], (w[0, center] + (sim[members, None] * v[0, members]).sum(0)) / den
        )
