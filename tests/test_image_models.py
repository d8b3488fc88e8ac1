"""Context Cluster image models: official parity, variants' sizes, padding, assignments, runtimes."""

import pytest
import torch
from conftest import assert_mixer_route_is_the_official_graph, load_fixture, train_step

import pointcoc
from pointcoc.cluster import cosine_similarity_to_centers, fold_regions, grid_centers, grid_to_points
from pointcoc.compat import load_official_checkpoint, official_model
from pointcoc.layers import RegionClusterMixer
from pointcoc.models import ContextCluster

IMAGE_MODELS = pointcoc.list_models(family="context_cluster")
# coc_mini's configuration (as in the official fixtures) for quick models.
MINI = dict(
    layers=[1, 1, 1, 1],
    embed_dims=[16, 32, 48, 64],
    mlp_ratios=[2, 2, 2, 2],
    heads=[2, 2, 4, 4],
    head_dim=[8, 8, 8, 8],
    proposal_w=[2, 2, 2, 2],
    proposal_h=[2, 2, 2, 2],
    fold_w=[4, 2, 1, 1],
    fold_h=[4, 2, 1, 1],
    down_patch_size=3,
    down_pad=1,
    num_classes=10,
)


def mini(**kwargs) -> ContextCluster:
    return ContextCluster(**{**MINI, **kwargs})


def test_registry_lists_the_official_variants():
    assert IMAGE_MODELS == sorted(
        [
            "coc_tiny",
            "coc_tiny2",
            "coc_tiny_plain",
            "coc_small",
            "coc_medium",
            "coc_base_dim64",
            "coc_base_dim96",
        ]
    )


@pytest.mark.parametrize("name", ["coc_mini.pt", "coc_mini_plain.pt"])
def test_official_fixture_outputs(name):
    fx = load_fixture(name)
    model = official_model(fx["builder"], fx["kwargs"], fx["state_dict"])
    with torch.no_grad():
        out = model(fx["input"])
    torch.testing.assert_close(out, fx["output"], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_variant_parameter_count_and_state_dict_shapes(name, official_variants):
    # forward and backward of every variant: tests/test_models.py
    model = pointcoc.create_model(name)
    params = sum(p.numel() for p in model.parameters())
    assert params == official_variants[name]["params"]
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == official_variants[name]["state_dict_shapes"]


def test_official_builder_rejects_what_it_cannot_build():
    builder = "models.context_cluster.ContextCluster"
    kwargs = {**MINI, "norm_layer": "models.context_cluster.GroupNorm"}
    with pytest.raises(ValueError, match="norm_layer"):
        official_model(builder, {**kwargs, "norm_layer": "torch.nn.BatchNorm2d"})
    with pytest.raises(ValueError, match="act_layer"):
        official_model(builder, {**kwargs, "act_layer": "torch.nn.ReLU"})
    model = official_model(builder, {**kwargs, "act_layer": "torch.nn.modules.activation.GELU"})
    assert isinstance(model, ContextCluster) and not model.training


def test_per_stage_lists_must_match_layers():
    with pytest.raises(ValueError, match=r"heads must give one value per stage \(4\)"):
        mini(heads=[2, 2, 4])


def test_drop_path_rule_layer_scale_and_init():
    model = pointcoc.create_model("coc_tiny", drop_path_rate=0.1)
    rates = [block.drop_path.p for idx in model.stage_indices for block in model.network[idx]]
    assert rates == pytest.approx([0.1 * i / 13 for i in range(14)])
    block = model.network[0][0]
    assert torch.equal(block.layer_scale_1, torch.full((32,), 1e-5))
    assert torch.equal(block.mlp.fc1.bias, torch.zeros(256))
    assert 0.015 < block.mlp.fc1.weight.std() < 0.025  # trunc_normal(std=.02)
    plain = pointcoc.create_model("coc_tiny", use_layer_scale=False)
    removed = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in plain.parameters())
    assert removed == 2 * (3 * 32 + 4 * 64 + 5 * 196 + 2 * 320)
    assert not any("layer_scale" in k for k in plain.state_dict())


def test_drop_path_is_stochastic_in_training_only():
    model = mini(drop_path_rate=0.5)
    x = torch.randn(8, 3, 32, 32)
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_region_outside_the_padding_is_unchanged():
    # fold 4 on 10x10: padded to 12x12, regions of 3x3; the top-left region holds no padding,
    # so its output must not depend on anything outside it, padded or not.
    mixer = RegionClusterMixer(8, proposal_w=2, proposal_h=2, fold_w=4, fold_h=4, heads=2, head_dim=4)
    assert mixer.padded_size(10, 10) == (12, 12) and mixer.padded_size(12, 8) == (12, 8)
    x10 = torch.randn(2, 8, 10, 10, requires_grad=True)
    x12 = torch.randn(2, 8, 12, 12)
    x12[..., :10, :10] = x10.detach()
    out10, out12 = mixer(x10), mixer(x12)
    assert out10.shape == (2, 8, 10, 10)
    torch.testing.assert_close(out10[..., :3, :3], out12[..., :3, :3])
    out10.square().sum().backward()
    assert torch.isfinite(x10.grad).all()


@pytest.mark.parametrize(
    "size, fold, heads, proposals",
    [(16, 4, 4, 2), (14, 2, 8, 2), (7, 1, 8, 2), (12, 1, 2, 4), (12, 3, 1, 3)],
)
def test_region_mixer_training_route_is_the_official_graph(size, fold, heads, proposals):
    # Training applies v and proj to every head's centers (similarity normaliser, divisible map)
    torch.manual_seed(0)
    mixer = RegionClusterMixer(
        20, fold_w=fold, fold_h=fold, heads=heads, head_dim=6, proposal_w=proposals, proposal_h=proposals
    ).double()
    with torch.no_grad():
        mixer.sim_alpha.fill_(1.4)
        mixer.sim_beta.fill_(-0.3)
    x, grad_out = torch.randn(2, 20, size, size).double(), torch.randn(2, 20, size, size).double()
    assert_mixer_route_is_the_official_graph(mixer, x, grad_out)


@pytest.mark.parametrize("size, fold, heads", [(14, 2, 8), (12, 1, 2)])
def test_region_mixer_fused_training_block_equals_its_composed_route(size, fold, heads, monkeypatch):
    # Eager float training runs the route as one function; autocast and compilation run it composed. Same
    # values and gradients, in float64, from an NCHW and from a channels-last input.
    from pointcoc.layers import cluster_mixers

    torch.manual_seed(0)
    mixer = RegionClusterMixer(20, fold_w=fold, fold_h=fold, heads=heads, head_dim=6).double()
    with torch.no_grad():
        mixer.sim_alpha.fill_(1.3)
        mixer.sim_beta.fill_(0.2)
    x, grad_out = torch.randn(2, 20, size, size).double(), torch.randn(2, 20, size, size).double()
    block, calls = cluster_mixers._RegionClusterBlock, []
    monkeypatch.setattr(block, "apply", lambda *a, _apply=block.apply: calls.append(1) or _apply(*a))
    for memory_format in (torch.contiguous_format, torch.channels_last):
        x_in = x.contiguous(memory_format=memory_format)
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: False)
        fused = train_step(mixer, x_in, grad_out)
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        composed = train_step(mixer, x_in, grad_out)
        torch.testing.assert_close(fused, composed, rtol=1e-12, atol=1e-12)
    assert len(calls) == 2  # the fused function ran for the fused steps only


def test_region_mixer_takes_the_official_graph_where_the_route_is_not_the_same_function(monkeypatch):
    from pointcoc.layers import cluster_mixers

    mixer = RegionClusterMixer(8, fold_w=2, fold_h=2, heads=2, head_dim=4)
    monkeypatch.setattr(
        cluster_mixers.RegionClusterMixer,
        "_forward_through_centers",
        lambda self, x: pytest.fail("took the training route"),
    )
    x = torch.randn(1, 8, 8, 8, requires_grad=True)
    with torch.no_grad():
        mixer(x)  # evaluation: the counted products
    mixer(torch.randn(1, 8, 7, 7, requires_grad=True))  # padded map: padded values are zeros, not v(0)
    with cluster_mixers.recording([mixer]):
        mixer(x)
    mixer.aggregation = "count"  # not a weighted mean: v's bias would not pass through
    mixer(x)


def test_divisible_sizes_do_not_pad(monkeypatch):
    fx = load_fixture("coc_mini.pt")
    model = official_model(fx["builder"], fx["kwargs"], fx["state_dict"])
    monkeypatch.setattr(torch.nn.functional, "pad", lambda *a, **k: pytest.fail("padded a divisible map"))
    with torch.no_grad():
        torch.testing.assert_close(model(fx["input"]), fx["output"], atol=1e-5, rtol=1e-4)


def test_channels_last_bf16_autocast():
    model = mini().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(model(x.to(memory_format=torch.channels_last)), ref)
    xb = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(xb.to(memory_format=torch.channels_last))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    out.float().sum().backward()
    assert torch.isfinite(xb.grad).all()
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_torch_compile_matches_eager():
    # aot_eager traces the whole model (fullgraph: no graph breaks) through dynamo and AOTAutograd;
    # inductor's cold C++ build of the same graph takes ~50 s on 2 cores, too slow for this file.
    model = mini(
        layers=[1, 1],
        embed_dims=[16, 32],
        mlp_ratios=[2, 2],
        heads=[2, 2],
        head_dim=[8, 8],
        proposal_w=[2, 2],
        proposal_h=[2, 2],
        fold_w=[4, 1],
        fold_h=[4, 1],
    )
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 3, 40, 56)  # stage 0 is 10x14: padded to 12x16 for its 4x4 regions
    out = compiled(x)
    torch.testing.assert_close(out, model(x), atol=1e-6, rtol=1e-5)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("size", [(64, 64), (72, 56)])
def test_assignment_capture(size):
    model = mini().eval()
    inputs = {}
    mixer = model.network[0][0].token_mixer
    mixer.register_forward_pre_hook(lambda m, args: inputs.__setitem__("x", args[0]))
    x = torch.randn(2, 3, *size)
    with torch.no_grad(), model.capture_clusters() as stages:
        model(x)
    h, w = size[0] // 4, size[1] // 4
    assert sorted(stages) == [0, 1, 2, 3]
    for s, stage in stages.items():
        # the official naming: fold_w folds dim 2 (H), fold_h dim 3 (W)
        assert stage.centers == 4 and stage.regions == (MINI["fold_w"][s], MINI["fold_h"][s])
        (block,) = stage.blocks
        assignment = block.assignment
        assert assignment.shape == (2, MINI["heads"][s], -(-h // 2**s), -(-w // 2**s))
        assert assignment.dtype == torch.long and assignment.min() >= 0 and assignment.max() < 4
    # Stage 0 (regions of the 16x16 or 18x14 map): recompute the argmax for one head and one region.
    with torch.no_grad():
        feats = mixer.f(inputs["x"]).reshape(2 * 2, 8, h, w)
        ph, pw = mixer.padded_size(h, w)
        feats = fold_regions(torch.nn.functional.pad(feats, (0, pw - w, 0, ph - h)), (4, 4))
        sims = cosine_similarity_to_centers(grid_to_points(feats), grid_centers(feats, (2, 2)))
    region = 4 * 1 + 2  # row 1, column 2 of the 4x4 regions, sample 0 / head 1 (the (b, head, region) order)
    rh, rw = ph // 4, pw // 4
    expected = sims[1 * 16 + region].argmax(-1).reshape(rh, rw)
    window = (0, 1, slice(rh, 2 * rh), slice(2 * rw, 3 * rw))
    assert torch.equal(stages[0].blocks[0].assignment[window], expected)
    similarity = torch.sigmoid(mixer.sim_beta + mixer.sim_alpha * sims[1 * 16 + region].amax(-1))
    torch.testing.assert_close(stages[0].blocks[0].similarity[window], similarity.reshape(rh, rw))
    assert all(not m.record_assignment and m.last_result is None for m in model.cluster_mixers())


def test_fork_feat_returns_four_normalised_maps():
    model = pointcoc.create_model("coc_tiny", fork_feat=True)
    assert not hasattr(model, "head") and not hasattr(model, "norm")
    norms = [n for n, _ in model.named_children() if n.startswith("norm")]
    assert norms == ["norm0", "norm2", "norm4", "norm6"]
    outs = model(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 16, 16), (2, 64, 8, 8), (2, 196, 4, 4), (2, 320, 2, 2)]
    assert isinstance(model.forward_features(torch.randn(1, 3, 32, 32)), list)
    features = pointcoc.create_model("coc_tiny").forward_features(torch.randn(1, 3, 64, 64))
    assert features.shape == (1, 320, 2, 2)


@pytest.mark.parametrize("wrap", ["state_dict_ema", "state_dict", None])
def test_load_official_checkpoint(tmp_path, wrap):
    source = mini()
    state = {f"module.{k}": v for k, v in source.state_dict().items()} if wrap else source.state_dict()
    path = tmp_path / "ckpt.pth"
    torch.save({wrap: state, "epoch": 3} if wrap else state, path)
    target = load_official_checkpoint(mini(), path, use_ema=wrap == "state_dict_ema")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_load_official_checkpoint_names_a_wrong_shaped_key(tmp_path):
    state = mini().state_dict()
    state["network.2.0.mlp.fc1.weight"] = torch.zeros(7, 32)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError, match=r"network\.2\.0\.mlp\.fc1\.weight \[7, 32\]"):
        load_official_checkpoint(mini(), path)


# The paper's MACs column (Table 1), in G; `main.py info` must report within 1% of it.
PAPER_GMACS = {"coc_tiny": 1.10, "coc_small": 2.78, "coc_medium": 5.90}


@pytest.mark.parametrize("name", sorted(PAPER_GMACS))
def test_macs_match_official_and_paper(name, official_variants):
    from pointcoc.utils.flops import count_macs

    model = pointcoc.create_model(name, num_classes=1000)
    macs, _ = count_macs(model, model.example_input(1))
    assert macs == official_variants[name]["macs"]
    assert abs(macs / 1e9 - PAPER_GMACS[name]) / PAPER_GMACS[name] < 0.01


def test_grad_checkpointing_gives_the_same_gradients_and_keeps_less():
    torch.manual_seed(0)
    model = pointcoc.create_model("coc_tiny_plain", num_classes=5, drop_path_rate=0.1).train()
    x = torch.randn(2, 3, 64, 64)

    def run(checkpointing: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        model.set_grad_checkpointing(checkpointing)
        model.zero_grad()
        saved = []
        torch.manual_seed(1)  # same drop-path draws in both runs
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            loss = model(x).logsumexp(-1).sum()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, sum(saved)

    loss, grads, kept = run(False)
    loss_ckpt, grads_ckpt, kept_ckpt = run(True)
    torch.testing.assert_close(loss_ckpt, loss)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert kept_ckpt < kept / 4


def test_capture_clusters_under_grad_checkpointing():
    model = mini().eval()
    x = torch.randn(2, 3, 64, 64)
    captured = []
    for checkpointing in (False, True):
        model.set_grad_checkpointing(checkpointing)
        with model.capture_clusters() as stages:
            model(x).sum().backward()  # the blocks run through torch.utils.checkpoint when enabled
        captured.append([block.assignment for stage in stages.values() for block in stage.blocks])
    assert len(captured[1]) == 4 and all(torch.equal(a, b) for a, b in zip(*captured))
