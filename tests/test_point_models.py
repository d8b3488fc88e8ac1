import pytest
import torch
from conftest import load_fixture

import pointcoc
from pointcoc.compat import load_official_checkpoint, official_model
from pointcoc.models.pointmlp import PointMLP, convert_official_state_dict

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
def test_forward_backward(name):
    model = pointcoc.create_model(name, num_classes=7, num_points=256)
    xyz = torch.rand(2, 256, 3) * 2 - 1
    logits = model(xyz)
    assert logits.shape == (2, 7)
    logits.logsumexp(-1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(xyz)).all()


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
        (torch.rand(256, 3), r"xyz must have shape \[B, N, 3\]"),
        (torch.rand(2, 100, 3), r"xyz has 100 points but the model samples 128 anchors"),
    ],
)
def test_bad_inputs(xyz, match):
    model = pointcoc.create_model("pointmlp_elite", num_points=256)
    with pytest.raises(ValueError, match=match):
        model(xyz)


def test_non_finite_points_are_rejected():
    model = pointcoc.create_model("pointmlp_elite", num_points=256)
    xyz = torch.rand(2, 256, 3)
    xyz[1, 7, 2] = float("nan")
    with pytest.raises(ValueError, match="xyz contains 1 non-finite values"):
        model(xyz)


def test_bad_configuration():
    with pytest.raises(ValueError, match="stage 3 would sample"):
        pointcoc.create_model("pointmlp", num_points=128)
    with pytest.raises(ValueError, match="per-stage lists must have equal lengths"):
        pointcoc.create_model("pointmlp", reducers=(2, 2))
    with pytest.raises(ValueError, match="activation must be one of"):
        pointcoc.create_model("pointmlp", activation="swishy")


def test_registry():
    assert {"pointmlp", "pointmlp_elite", "pointmlp_coc", "pointmlp_coc_elite"} <= set(pointcoc.list_models())
    assert pointcoc.list_models("pointmlp_coc*") == ["pointmlp_coc", "pointmlp_coc_elite"]
    with pytest.raises(ValueError, match="unknown model 'pointmlp_cox'"):
        pointcoc.create_model("pointmlp_cox")


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
