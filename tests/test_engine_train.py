import copy
import json

import pytest
import torch
from test_engine_helpers import tiny_point_config

from pointcoc.engine import trainer
from pointcoc.engine.checkpoint import load_checkpoint
from pointcoc.engine.trainer import train

SPLIT_KEYS = {"oa", "macc", "per_class"}


class Killed(Exception):
    pass


def test_resume_reaches_the_uninterrupted_result_and_metrics_json_is_documented(tmp_path, monkeypatch):
    config = tiny_point_config("train.ema_decay=0.9", "train.grad_clip=1.0")
    full = train(config, tmp_path / "full")

    # the same run, killed after the second epoch's checkpoint (the end-of-epoch barrier), then resumed
    calls = {"n": 0}

    def barrier_then_die() -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise Killed

    monkeypatch.setattr(trainer, "barrier", barrier_then_die)
    with pytest.raises(Killed):
        train(config, tmp_path / "killed")
    assert load_checkpoint(tmp_path / "killed" / "checkpoint_last.pt")["epoch"] == 2
    monkeypatch.undo()
    resumed = train(config, tmp_path / "killed", resume=True)

    assert resumed["val"] == full["val"] and resumed["test"] == full["test"]
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in full["history"]]
    a = load_checkpoint(tmp_path / "full" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "killed" / "checkpoint_last.pt")
    for part in ("model", "ema"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key} differs after resume"

    saved = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert set(saved["val"]) == {"last", "best"}
    for m in (saved["val"]["last"], saved["val"]["best"], saved["test"]):
        assert set(m) == SPLIT_KEYS and 0 <= m["oa"] <= 1 and 0 <= m["macc"] <= 1
        assert set(m["per_class"]) <= {"sphere", "box", "cylinder"}
    assert saved["timing"]["train_s"] > 0 and saved["peak_memory"]["cpu_max_rss_mb"] > 0
    run = tmp_path / "full"
    for name in ("config.yaml", "environment.json", "checkpoint_best.pt", "checkpoint_last.pt"):
        assert (run / name).is_file(), name
    env = json.loads((run / "environment.json").read_text())
    assert env["versions"]["torch"] == torch.__version__ and "git_commit" in env
    assert any((run / "tensorboard").iterdir())


def test_same_seed_same_result(tmp_path):
    config = tiny_point_config("train.epochs=1")
    a, b = train(config, tmp_path / "a"), train(config, tmp_path / "b")
    assert a["history"][0]["loss"] == b["history"][0]["loss"] and a["val"] == b["val"]


def test_weight_decay_skips_norms_biases_and_cluster_alpha_beta():
    import pointcoc
    from pointcoc.engine.optim import param_groups

    model = pointcoc.create_model("pointmlp_coc_elite", num_classes=3, num_points=64, k_neighbors=(8,) * 4)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    skipped = {names[id(p)].rsplit(".", 1)[-1] for p in no_decay["params"]}
    assert {"sim_alpha", "sim_beta", "bias", "weight"} <= skipped  # "weight" of BatchNorm
    assert all(p.ndim >= 2 for p in decay["params"]) and no_decay["weight_decay"] == 0.0


def test_compiled_point_model_with_several_stage_shapes_trains_and_evaluates_as_eager():
    # runtime.compile: each PointMLP stage runs the same code at another shape; torch's automatic
    # dynamic-shape recompile of the second one failed in Inductor on CPU, static graphs do not.
    import pointcoc
    from pointcoc.engine import compile_model

    torch.manual_seed(0)
    model = pointcoc.create_model(
        "pointmlp_coc_elite", num_classes=3, num_points=128, embed_dim=8, dim_expansion=(2, 2),
        pre_blocks=(1, 1), pos_blocks=(1, 1), k_neighbors=(16, 16), reducers=(2, 2), drop_rate=0.0,
    ).train()  # fmt: skip
    x, y = torch.randn(2, 128, 3), torch.tensor([0, 2])
    exact = copy.deepcopy(model).double()
    losses, grads = [], []
    for runner, params in ((model, model), (compile_model(model), model), (exact, exact)):
        params.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        loss = torch.nn.functional.cross_entropy(runner(x.to(params.embedding.fc.weight.dtype)), y)
        loss.backward()
        losses.append(loss.detach().double())
        grads.append([p.grad.double() for p in params.parameters()])
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-5)
    # Against float64: the compiled step must be as close as float32 itself allows (the eager step's error;
    # in this small model BatchNorm over few rows makes that ~2e-3 of the largest gradient). A wrong graph
    # would be off by the gradients themselves.
    scale = max(g.abs().max() for g in grads[2])
    eager, compiled = (max((a - b).abs().max() for a, b in zip(grads[i], grads[2])) for i in (0, 1))
    assert eager <= 1e-2 * scale and compiled <= 2 * eager
    # and evaluation (the operator's index path: its index_add failed in Inductor's CPU code generation)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compile_model(model)(x), model(x), rtol=1e-4, atol=1e-5)
