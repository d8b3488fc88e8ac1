import pytest
import torch
from conftest import assert_mixer_route_is_the_official_graph, load_fixture, train_step

import pointcoc
from pointcoc.compat import load_official_checkpoint, official_model
from pointcoc.models.capture import group_owner
from pointcoc.models.pointmlp import PointMLP, convert_official_state_dict
from pointcoc.ops import farthest_point_sample, gather_points, knn_points

POINT_MODELS = pointcoc.list_models(family="pointmlp")
# Our registered name -> the official variant in variants.json (None: no official counterpart).
OFFICIAL_NAME = {
    "pointmlp": "pointMLP",
    "pointmlp_elite": "pointMLPElite",
    "pointmlp_coc": "pointMLP_CoC",
    "pointmlp_coc_elite": None,
}


def test_every_point_model_is_mapped():
    assert set(POINT_MODELS) == set(OFFICIAL_NAME)


@pytest.mark.parametrize("name", POINT_MODELS)
@pytest.mark.parametrize("num_classes", [40, 15])
def test_parameter_count_and_keys_match_official(name, num_classes, official_variants):
    official = OFFICIAL_NAME[name]
    if official is None:
        pytest.skip(f"{name} has no official counterpart")
    variant = official_variants[f"{official}[{num_classes}]"]
    model = pointcoc.create_model(name, num_classes=num_classes)
    assert sum(p.numel() for p in model.parameters()) == variant["params"]
    converted = convert_official_state_dict(
        {k: torch.empty(s) for k, s in variant["state_dict_shapes"].items()},
        cluster=model.stages[0].pre[0].cluster is not None,
    )
    ours = model.state_dict()
    assert set(converted) == set(ours)
    assert all(converted[k].shape == ours[k].shape for k in ours)


def test_coc_block_layout():
    model = pointcoc.create_model("pointmlp_coc")
    for stage, dim in zip(model.stages, (128, 256, 512, 1024)):
        assert stage.grouper.k == 24
        assert [b.cluster.heads for b in stage.pre] == [1, 1]
        assert [b.cluster.head_dim for b in stage.pre] == [max(dim // 4, 32)] * 2
    assert all(b.cluster is None for s in pointcoc.create_model("pointmlp").stages for b in s.pre)


@pytest.mark.parametrize("fixture", ["pointmlp_mini.pt", "pointmlp_coc_mini.pt"])
def test_official_fixture_reproduced(fixture):
    fx = load_fixture(fixture)
    model = official_model(fx["builder"], fx["kwargs"], fx["state_dict"])
    assert not model.training
    with torch.no_grad():
        out = model(fx["input"])
    torch.testing.assert_close(out, fx["output"], atol=1e-5, rtol=1e-4)
    # The same weights in our native layout ([B, N, 3]) give the same logits.
    native = PointMLP(**{k: v for k, v in model.config.items() if k != "input_layout"})
    native.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(native.eval()(fx["input"].transpose(1, 2)), out)


def test_official_modelnet40_builder_and_unknown_builder():
    model = official_model("classification_ModelNet40.models.pointmlp.Model", {"class_num": 40})
    assert sum(p.numel() for p in model.parameters()) == 13238504
    with pytest.raises(ValueError, match="unknown official builder"):
        official_model("models.pointmlp.Nope", {})
    with pytest.raises(ValueError, match="cannot build .* from kwargs"):
        official_model("classification_ModelNet40.models.pointmlp.Model", {"no_such_arg": 1})
    with pytest.raises(ValueError, match="groups > 1"):
        official_model("classification_ModelNet40.models.pointmlp.Model", {"groups": 2})


def _official_coc(fx):
    return official_model(fx["builder"], fx["kwargs"])


def test_load_official_checkpoint_pointmlp_style(tmp_path):
    fx = load_fixture("pointmlp_coc_mini.pt")
    path = tmp_path / "best_checkpoint.pth"
    # pointMLP's training script saves {"net": DataParallel state dict, "epoch": ..., "acc": ...}.
    torch.save({"net": {f"module.{k}": v for k, v in fx["state_dict"].items()}, "epoch": 3, "acc": 0.5}, path)
    model = load_official_checkpoint(_official_coc(fx), path).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(fx["input"]), fx["output"], atol=1e-5, rtol=1e-4)
    # A model built from the registry (not through official_model) converts too.
    native = pointcoc.create_model("pointmlp_coc", num_classes=15, **_mini_overrides(fx["kwargs"]))
    load_official_checkpoint(native, path)
    # Our own key names load as they are.
    torch.save(native.state_dict(), tmp_path / "ours.pt")
    load_official_checkpoint(_official_coc(fx), tmp_path / "ours.pt")


def _mini_overrides(kw):
    return dict(
        num_points=kw["points"],
        embed_dim=kw["embed_dim"],
        dim_expansion=kw["dim_expansion"],
        pre_blocks=kw["pre_blocks"],
        pos_blocks=kw["pos_blocks"],
        k_neighbors=kw["k_neighbors"],
        reducers=kw["reducers"],
    )


def test_load_checkpoint_of_another_model_lists_the_differences(tmp_path):
    fx = load_fixture("pointmlp_mini.pt")
    path = tmp_path / "pointmlp.pth"
    torch.save({"net": fx["state_dict"]}, path)
    with pytest.raises(ValueError) as err:
        load_official_checkpoint(_official_coc(load_fixture("pointmlp_coc_mini.pt")), path)
    msg = str(err.value)
    assert str(path) in msg and "missing (" in msg and "cluster.sim_alpha" in msg
    assert "\n" not in msg
    sd = dict(fx["state_dict"])
    sd["classifier.8.weight"] = torch.zeros(10, 256)
    torch.save(sd, path)
    with pytest.raises(
        ValueError,
        match=r"does not fit PointMLP: mis-shaped \(1\): "
        r"classifier.8.weight \[10, 256\] vs \[15, 256\]$",
    ):
        load_official_checkpoint(
            pointcoc.create_model("pointmlp", num_classes=15, **_mini_overrides(fx["kwargs"])), path
        )


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoint_that_runs_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"net": _RunsCode()}, path)
    with pytest.raises(ValueError, match="was refused: it holds"):
        load_official_checkpoint(pointcoc.create_model("pointmlp_elite"), path)
    assert "must never run" not in capsys.readouterr().out
    with pytest.raises(ValueError, match="missing.pth does not exist"):
        load_official_checkpoint(pointcoc.create_model("pointmlp_elite"), tmp_path / "missing.pth")


@pytest.mark.parametrize(
    "xyz,match",
    [
        (torch.rand(2, 3, 256), r"xyz must have shape \[B, N, 3\] \(input_layout='BNC'\), got \[2, 3, 256\]"),
        (torch.rand(2, 100, 3), r"xyz has 100 points but the model samples 128 anchors"),
    ],
)
def test_bad_inputs(xyz, match):
    model = pointcoc.create_model("pointmlp_elite", num_points=256)
    with pytest.raises(ValueError, match=match):
        model(xyz)


def test_bad_configuration():
    with pytest.raises(ValueError, match="stage 3 would sample"):
        pointcoc.create_model("pointmlp", num_points=128)
    with pytest.raises(ValueError, match=r"reducers must give one value per stage \(4\), got \[2, 2\]"):
        pointcoc.create_model("pointmlp", reducers=(2, 2))
    with pytest.raises(ValueError, match="activation must be one of"):
        pointcoc.create_model("pointmlp", activation="swishy")


@pytest.mark.parametrize(
    "name,official",
    [
        ("pointmlp", "pointMLP[40]"),
        ("pointmlp_elite", "pointMLPElite[40]"),
        ("pointmlp_coc", "pointMLP_CoC[40]"),
    ],
)
def test_macs_match_official(name, official, official_variants):
    from pointcoc.utils.flops import count_macs

    model = pointcoc.create_model(name)
    macs, _ = count_macs(model, model.example_input(1))
    assert macs == official_variants[official]["macs"]


def tiny(name: str = "pointmlp_coc_elite", **kwargs) -> PointMLP:
    torch.manual_seed(0)
    config = dict(num_classes=6, num_points=256, embed_dim=16, k_neighbors=(10,) * 4, drop_rate=0.0)
    return pointcoc.create_model(name, **{**config, **kwargs}).eval()


def test_capture_records_the_forwards_own_sampling_and_groups():
    model = tiny(cluster_heads=2)
    xyz = torch.rand(2, 256, 3) * 2 - 1
    with torch.no_grad():
        plain = model(xyz)
        with model.capture_clusters() as stages:
            logits = model(xyz)
    assert torch.equal(logits, plain)  # capturing changes nothing
    assert sorted(stages) == [0, 1, 2, 3]
    points = xyz
    for s, samples in enumerate(model.stage_samples):
        stage = stages[s]
        assert stage.within_groups and stage.centers == samples and torch.equal(stage.points, points)
        if s == 0:
            assert stage.point_idx is None
        else:
            assert torch.equal(gather_points(xyz, stage.point_idx), points)
        assert torch.equal(stage.anchor_idx, farthest_point_sample(points, samples))
        anchors = gather_points(points, stage.anchor_idx)
        assert torch.equal(stage.groups, knn_points(anchors, points, 10))
        assert len(stage.blocks) == len(model.stages[s].pre)
        assert all(block.assignment.shape == (2, 2, points.shape[1]) for block in stage.blocks)
        points = anchors
    assert not any(m.record_assignment or m.last_result is not None for m in model.cluster_mixers())
    assert all(stage.blocks == [] for stage in _captured(tiny("pointmlp_elite"), xyz))  # groups only


def _captured(model: PointMLP, xyz: torch.Tensor) -> list:
    with torch.no_grad(), model.capture_clusters() as stages:
        model(xyz)
    return list(stages.values())


def test_capture_names_the_group_each_point_is_most_similar_to():
    # A kNN group has one center, its mean: over the groups holding a point, the one whose center the
    # point is most similar to (as the mixer computed it) is the center the point is shown joining.
    model = tiny(k_neighbors=(4,) * 4)  # groups of 4: some points in several groups, some in none
    xyz = torch.rand(1, 256, 3) * 2 - 1
    mixer = model.stages[0].pre[0].cluster
    mixer.record_assignment = True
    with torch.no_grad():
        model(xyz)
    member = mixer.last_result.similarity.reshape(128, 4)  # one cloud, one head: [groups, K]
    mixer.record_assignment, mixer.last_result = False, None
    stage = _captured(model, xyz)[0]
    owner, best = torch.full((256,), -1), torch.zeros(256)
    for g, row in enumerate(stage.groups[0].tolist()):
        for k, n in enumerate(row):
            if owner[n] < 0 or member[g, k] >= best[n]:
                owner[n], best[n] = g, member[g, k]
    assert (owner < 0).any() and stage.groups[0].flatten().bincount().max() > 1
    assert torch.equal(stage.blocks[0].assignment[0, 0], owner)
    torch.testing.assert_close(stage.blocks[0].similarity[0, 0], best)


def test_group_owner_takes_the_most_similar_group_and_marks_ungrouped_points():
    groups = torch.tensor([[[0, 1, 2], [2, 3, 4], [4, 1, 0]]])
    score = torch.tensor([[[[0.9, 0.2, 0.5], [0.7, 0.8, 0.1], [0.3, 0.6, 0.4]]]])
    owner, best = group_owner(groups, score, num_points=6)
    assert owner.tolist() == [[[0, 2, 1, 1, 2, -1]]]
    torch.testing.assert_close(best, torch.tensor([[[0.9, 0.6, 0.7, 0.8, 0.3, 0.0]]]))


@pytest.mark.parametrize("heads", [1, 2])
def test_group_mixer_training_route_is_the_official_graph(heads):
    # Training pushes v and proj through the aggregation (one head, similarity normaliser)
    from pointcoc.layers import GroupClusterMixer

    torch.manual_seed(0)
    mixer = GroupClusterMixer(64, heads=heads).double()
    with torch.no_grad():
        mixer.sim_alpha.fill_(1.4)
        mixer.sim_beta.fill_(-0.3)
    x, grad_out = torch.randn(2, 5, 7, 64, dtype=torch.float64), torch.randn(2, 5, 7, 64, dtype=torch.float64)
    assert_mixer_route_is_the_official_graph(mixer, x, grad_out, routed=heads == 1)


def test_group_mixer_fused_training_block_equals_its_composed_route(monkeypatch):
    # Eager float training runs the route as one function (one gradient for the block's input); autocast and
    # compilation run it composed. Same values and gradients, in float64.
    from pointcoc.layers import GroupClusterMixer

    torch.manual_seed(0)
    mixer = GroupClusterMixer(48).double()
    with torch.no_grad():
        mixer.sim_alpha.fill_(1.7)
        mixer.sim_beta.fill_(0.4)
    x, grad_out = torch.randn(2, 6, 9, 48, dtype=torch.float64), torch.randn(2, 6, 9, 48, dtype=torch.float64)
    import pointcoc.layers.cluster_mixers as mixers

    block, calls = mixers._GroupClusterBlock, []
    monkeypatch.setattr(block, "apply", lambda *a, _apply=block.apply: calls.append(1) or _apply(*a))
    fused = train_step(mixer, x, grad_out)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    composed = train_step(mixer, x, grad_out)
    assert len(calls) == 1  # the fused function ran once, for the first step only
    torch.testing.assert_close(fused, composed, rtol=1e-12, atol=1e-12)
    assert set(fused[2]) == {n for n, _ in mixer.named_parameters()}


def test_pointmlp_coc_pre_block_trains_as_its_composed_parts(monkeypatch):
    # In eager float training the cluster block and the residual MLP run as one function (the MLP's input
    # gradient takes the block's in place); values, every gradient and the BatchNorm statistics must be the
    # composed parts', also through a retained graph's second backward.
    import copy

    import pointcoc.layers.pre_block as pre_block
    from pointcoc.models.pointmlp import PreBlock

    torch.manual_seed(0)
    block = PreBlock(12, 1.0, False, "relu", cluster=True, heads=1).double().train()
    with torch.no_grad():
        block.cluster.sim_alpha.fill_(1.3)
        block.cluster.sim_beta.fill_(0.2)
        for bn in (block.mlp.net1.bn, block.mlp.net2.bn):
            bn.weight.normal_()
            bn.bias.normal_()
    reference = copy.deepcopy(block)
    x, grad_out = torch.randn(2, 5, 7, 12, dtype=torch.float64), torch.randn(2, 5, 7, 12, dtype=torch.float64)
    fused_fn, calls = pre_block._ClusterResidualUnit, []
    monkeypatch.setattr(fused_fn, "apply", lambda *a, _apply=fused_fn.apply: calls.append(1) or _apply(*a))

    def composed(x):
        return reference.mlp(reference.cluster(x))

    fused = _layer_train_step(block, x, grad_out, block)
    assert calls == [1]
    torch.testing.assert_close(
        fused, _layer_train_step(reference, x, grad_out, composed), rtol=1e-10, atol=1e-12
    )  # fmt: skip
    _assert_retained_graph_backward_repeats(block, x, grad_out)


def test_linear_bn_forward_concat_trains_as_the_concatenation():
    from pointcoc.layers import LinearBN

    torch.manual_seed(0)
    layer = LinearBN(6 + 4, 8, bias=True).double().train()
    x, shared = torch.randn(3, 5, 7, 6, dtype=torch.float64), torch.randn(3, 5, 4, dtype=torch.float64)
    grad_out = torch.randn(3, 5, 7, 8, dtype=torch.float64)

    def run(concat: bool):
        layer.zero_grad(set_to_none=True)
        a, b = x.clone().requires_grad_(), shared.clone().requires_grad_()
        if concat:
            out = layer(torch.cat([a, b.unsqueeze(-2).expand(-1, -1, 7, -1)], dim=-1))
        else:
            out = layer.forward_concat(a, b)
        out.backward(grad_out)
        return out.detach(), a.grad, b.grad, layer.fc.weight.grad, layer.fc.bias.grad, layer.bn.weight.grad

    torch.testing.assert_close(run(False), run(True), rtol=1e-10, atol=1e-12)
    with torch.no_grad():  # evaluation concatenates: its products are the counted (official) ones
        layer.eval()
        torch.testing.assert_close(layer.forward_concat(x, shared), layer(
            torch.cat([x, shared.unsqueeze(-2).expand(-1, -1, 7, -1)], dim=-1)), rtol=0, atol=0)  # fmt: skip


@pytest.mark.parametrize("use_xyz", [False, True])
def test_grouper_linear_of_groups_is_the_transfer_of_the_official_groups(use_xyz):
    # Training maps the N points before grouping them; it must be the transfer layer's product of the
    # official grouper's output (normalised neighbours and their anchors' features), forward and backward.
    from pointcoc.models.pointmlp import LocalGrouper

    torch.manual_seed(0)
    grouper = LocalGrouper(6, samples=8, k=5, use_xyz=use_xyz, normalize="anchor").double()
    linear = torch.nn.Linear(2 * 6 + 3 * use_xyz, 7).double()
    with torch.no_grad():
        grouper.affine_alpha.normal_()
        grouper.affine_beta.normal_()
    xyz, feats = torch.rand(2, 30, 3, dtype=torch.float64), torch.randn(2, 30, 6, dtype=torch.float64) + 2
    grad_out = torch.randn(2, 8, 5, 7, dtype=torch.float64)

    def run(route: bool):
        grouper.zero_grad(set_to_none=True)
        linear.zero_grad(set_to_none=True)
        f = feats.clone().requires_grad_()
        if route:
            anchors, groups, out = grouper.linear_of_groups(xyz, f, linear)
        else:
            anchors, groups, grouped, anchor_feats = grouper(xyz, f)
            out = linear(torch.cat([grouped, anchor_feats.unsqueeze(2).expand(-1, -1, 5, -1)], -1))
        out.backward(grad_out)
        params = [grouper.affine_alpha, grouper.affine_beta, linear.weight, linear.bias]
        return anchors, groups, out.detach(), f.grad, *(p.grad for p in params)

    torch.testing.assert_close(run(True), run(False), rtol=1e-10, atol=1e-12)


def test_anchor_difference_std_from_moments_is_as_accurate_as_float32_allows():
    # The std of the neighbour-anchor differences comes from group sums (no [B, S, K, C] tensor); centred,
    # features far from zero (ReLU outputs with an offset) keep it within a few float32 roundings.
    from pointcoc.models.pointmlp import _anchor_difference_std

    g = torch.Generator().manual_seed(0)
    table = torch.relu(torch.randn(4, 256, 64, generator=g) + 5)
    groups = torch.randint(0, 256, (4, 128, 24), generator=g)
    anchors = gather_points(table, groups[:, :, 0])
    diff = (gather_points(table, groups) - anchors.unsqueeze(2)).double()
    exact = diff.reshape(4, -1).std(-1)
    torch.testing.assert_close(
        _anchor_difference_std(table, anchors, groups).double(), exact, rtol=2e-6, atol=0
    )
    # Under bf16 autocast, on features that vary along the cloud more than within a group (neighbourhoods):
    # the moments in bf16 were 4-9% off; in float32, then rounded once to bf16, within a percent.
    trend = torch.linspace(0, 20, 256).view(1, 256, 1) * torch.randn(1, 1, 64, generator=g)
    table = (trend + 0.05 * torch.randn(4, 256, 64, generator=g)).bfloat16()
    groups = torch.randint(0, 256 - 24, (4, 128, 1), generator=g) + torch.arange(24)
    anchors = gather_points(table, groups[:, :, 0])
    exact = (gather_points(table.double(), groups) - anchors.double().unsqueeze(2)).reshape(4, -1).std(-1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        std = _anchor_difference_std(table, anchors, groups)
    assert std.dtype == torch.bfloat16
    torch.testing.assert_close(std.double(), exact, rtol=1e-2, atol=0)


def _layer_train_step(module, x, grad_out, forward):
    return *train_step(module, x, grad_out, forward), list(module.buffers())


@pytest.mark.parametrize("bias", [False, True])
def test_fused_batchnorm_relu_and_residual_unit_train_as_the_composed_layers(bias):
    # Their backwards are written out (fewer full-size tensors); values, gradients and running statistics
    # must be the composed layers'.
    import copy

    from pointcoc.layers import LinearBN
    from pointcoc.models.pointmlp import ResidualMLP

    torch.manual_seed(0)
    unit = ResidualMLP(6, 1.5, bias, "relu").double().train()
    for bn in (unit.net1.bn, unit.net2.bn):
        torch.nn.init.normal_(bn.weight)
        torch.nn.init.normal_(bn.bias)
    x, grad_out = (
        torch.randn(3, 4, 5, 6, dtype=torch.float64) + 1,
        torch.randn(3, 4, 5, 6, dtype=torch.float64),
    )

    def composed(m):
        def forward(x):
            hidden = m.act(m.net1.bn(m.net1.fc(x).reshape(-1, 9))).view(3, 4, 5, 9)
            return m.act(m.net2.bn(m.net2.fc(hidden).reshape(-1, 6)).view(x.shape) + x)

        return forward

    reference = copy.deepcopy(unit)
    torch.testing.assert_close(
        _layer_train_step(unit, x, grad_out, unit),
        _layer_train_step(reference, x, grad_out, composed(reference)),
        rtol=1e-10, atol=1e-12,
    )  # fmt: skip
    layer = LinearBN(6, 9, bias, "relu").double().train()
    reference = copy.deepcopy(layer)
    grad_hidden = torch.randn(3, 4, 5, 9, dtype=torch.float64)

    def layer_composed(x):
        return reference.act(reference.bn(reference.fc(x).reshape(-1, 9))).view(3, 4, 5, 9)

    torch.testing.assert_close(
        _layer_train_step(layer, x, grad_hidden, layer),
        _layer_train_step(reference, x, grad_hidden, layer_composed),
        rtol=1e-10, atol=1e-12,
    )  # fmt: skip


def test_residual_unit_backward_keeps_its_saved_tensors_when_the_graph_is_retained():
    # Its backward writes a gradient over a tensor its forward saved, unless the graph is kept: a second
    # backward through a retained graph must see the same saved tensors and give the same gradients.
    from pointcoc.models.pointmlp import ResidualMLP

    torch.manual_seed(0)
    unit = ResidualMLP(6, 1.5, False, "relu").double().train()
    torch.nn.init.normal_(unit.net2.bn.bias)
    x, grad_out = torch.randn(3, 4, 5, 6, dtype=torch.float64), torch.randn(3, 4, 5, 6, dtype=torch.float64)
    _assert_retained_graph_backward_repeats(unit, x, grad_out)


def _assert_retained_graph_backward_repeats(module, x, grad_out):
    """Two backwards through one retained graph give the same input and parameter gradients (a backward that
    overwrites what its forward saved must not do so while the graph is kept)."""
    inputs = x.clone().requires_grad_()
    out, grads = module(inputs), []
    for retain in (True, False):
        module.zero_grad(set_to_none=True)
        inputs.grad = None
        out.backward(grad_out, retain_graph=retain)
        grads.append([inputs.grad.clone()] + [p.grad.clone() for p in module.parameters()])
    for first, second in zip(*grads):
        torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_saved_tensors_used_once_tells_a_retained_graph():
    from pointcoc.utils.autograd import saved_tensors_used_once

    seen = []

    class Spy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            seen.append(saved_tensors_used_once())
            return grad * 2

    x = torch.ones(3, requires_grad=True)
    y = Spy.apply(x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert seen == [False, True]


def test_max_values_is_max_with_one_gradient_per_tie():
    from pointcoc.layers import max_values

    torch.manual_seed(0)
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64)
    x[0, :, 1, 0] = 0.5  # a tie along the pooled dimension: max's index takes the whole gradient
    grad = torch.randn(2, 5, 3, dtype=torch.float64)
    ours, reference = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.testing.assert_close(max_values(ours, 2), reference.max(dim=2).values, rtol=0, atol=0)
    max_values(ours, 2).backward(grad)
    reference.max(dim=2).values.backward(grad)
    torch.testing.assert_close(ours.grad, reference.grad, rtol=0, atol=0)
    assert (ours.grad[0, :, 1, 0] != 0).sum() == 1
    assert torch.autograd.gradcheck(
        lambda t: max_values(t, 1), (torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True),)
    )


def test_fused_batchnorm_relu_only_where_it_is_the_same_function():
    from pointcoc.layers import LinearBN
    from pointcoc.layers.pointwise import _fused_relu

    layer = LinearBN(4, 4, False, "relu").train()
    y = layer.fc(torch.randn(8, 4))
    assert _fused_relu(layer.bn, layer.act, y)
    assert not _fused_relu(layer.bn, torch.nn.GELU(), y)
    assert not _fused_relu(torch.nn.SyncBatchNorm(4), layer.act, y)
    with torch.no_grad():
        assert not _fused_relu(layer.bn, layer.act, layer.fc(torch.randn(8, 4)))
    layer.bn.momentum = None  # cumulative averages: BatchNorm's own bookkeeping
    assert not _fused_relu(layer.bn, layer.act, y)
    layer.bn.momentum = 0.1
    layer.eval()
    assert not _fused_relu(layer.bn, layer.act, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not _fused_relu(layer.train().bn, layer.act, y)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("affine", [False, True])
def test_evaluation_folds_the_batchnorm_into_the_product(bias, affine):
    # With running statistics a BatchNorm is an affine map per channel, folded into fc: the same outputs,
    # with a residual and an activation too, and gradients still reaching fc's and the BatchNorm's weights.
    from pointcoc.layers import LinearBN

    torch.manual_seed(0)
    layer = LinearBN(6, 5, bias, "relu").double()
    layer.bn = torch.nn.BatchNorm1d(5, affine=affine).double()
    with torch.no_grad():
        layer.bn.running_mean.normal_()
        layer.bn.running_var.uniform_(0.5, 2)
        if affine:
            layer.bn.weight.uniform_(0.5, 2)
            layer.bn.bias.normal_()
    layer.eval()
    x, residual = torch.randn(3, 7, 6, dtype=torch.float64), torch.randn(3, 7, 5, dtype=torch.float64)
    composed = torch.relu(layer.bn(layer.fc(x).reshape(-1, 5)).reshape(3, 7, 5) + residual)
    calls = []
    hook = layer.bn.register_forward_hook(lambda *args: calls.append(1))
    folded = layer.forward_act(x, layer.act, residual)
    hook.remove()
    assert not calls  # no normalisation pass
    torch.testing.assert_close(folded, composed, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer(x), torch.relu(layer.bn(layer.fc(x).reshape(-1, 5))).reshape(3, 7, 5))
    params = list(layer.parameters())
    grads = [torch.autograd.grad(out.sum(), params) for out in (folded, composed)]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-12)


def test_batchnorm_is_folded_only_with_running_statistics():
    from pointcoc.layers.pointwise import _running_affine

    x = torch.randn(8, 4)
    bn = torch.nn.BatchNorm1d(4)
    assert _running_affine(bn, x) is None  # training: batch statistics
    assert _running_affine(bn.eval(), x) is not None
    assert _running_affine(torch.nn.BatchNorm1d(4, track_running_stats=False).eval(), x) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):  # BatchNorm runs in float32 after the product there
        assert _running_affine(bn, x) is None
    assert _running_affine(bn.bfloat16(), x.bfloat16()) is None  # likewise
