"""Optimiser groups per ``train.weight_decay_scope`` and the learning-rate schedule."""

from __future__ import annotations

import pytest
import torch

import pointcoc
from pointcoc.engine.config import load_config
from pointcoc.engine.optim import build_optimizer, param_groups


def small_model() -> torch.nn.Module:
    return pointcoc.create_model("pointmlp_coc_elite", num_classes=3, num_points=64, k_neighbors=(8,) * 4)


def test_weight_decay_scope_all_decays_every_parameter():
    model = small_model()
    (group,) = param_groups(model, 0.1, "all")
    assert group["weight_decay"] == 0.1
    assert {id(p) for p in group["params"]} == {id(p) for p in model.parameters()}


def test_weight_decay_scope_no_norm_bias_splits_the_parameters():
    model = small_model()
    decay, no_decay = param_groups(model, 0.1, "no_norm_bias")
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0 and no_decay["params"]


def test_weight_decay_scope_reaches_the_optimizer_and_typos_fail():
    model = small_model()
    train = load_config(None, ["train.weight_decay_scope=all"]).train
    assert len(build_optimizer(model, train).param_groups) == 1
    assert len(build_optimizer(model, load_config().train).param_groups) == 2
    with pytest.raises(ValueError, match="weight_decay_scope must be one of"):
        param_groups(model, 0.1, "no_norms")


@pytest.mark.parametrize(
    "recipe", ["modelnet40.yaml", "scanobjectnn_pointmlp.yaml", "scanobjectnn_pointmlp_coc.yaml"]
)
def test_official_point_recipes_decay_everything_and_sample_as_pointnet2_ops(recipe):
    config = load_config(f"experiments/configs/{recipe}")
    assert config.model.kwargs["fps_skip_near_origin"] is True
    train = config.train
    assert train.weight_decay_scope == "all"
    # pointMLP-pytorch clips gradients at norm 1 on ModelNet40 only (classification_ModelNet40/main.py).
    assert train.grad_clip == (1.0 if recipe == "modelnet40.yaml" else None)


def test_cooldown_epochs_stay_at_min_lr_after_the_schedule():
    from pointcoc.engine.optim import build_scheduler, total_epochs

    overrides = ["train.epochs=2", "train.cooldown_epochs=2", "train.lr=0.1", "train.min_lr=0.01"]
    train = load_config(None, overrides).train
    assert total_epochs(train) == 4
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = build_scheduler(optimizer, train, steps_per_epoch=3)
    lrs = []
    for _ in range(12):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[5] > 0.01
    assert lrs[6:] == pytest.approx([0.01] * 6)  # the two cooldown epochs


def test_trainer_runs_the_cooldown_epochs(tmp_path):
    from test_engine_helpers import tiny_point_config

    from pointcoc.engine.trainer import train

    config = tiny_point_config("train.epochs=1", "train.cooldown_epochs=1", "train.min_lr=0.001")
    history = train(config, tmp_path / "run")["history"]
    assert len(history) == 2 and history[1]["lr"] == pytest.approx(0.001)
