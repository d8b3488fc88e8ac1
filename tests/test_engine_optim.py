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
    train = load_config(None, ["train.weight_decay_scope=all"])["train"]
    assert len(build_optimizer(model, train).param_groups) == 1
    assert len(build_optimizer(model, load_config()["train"]).param_groups) == 2
    with pytest.raises(ValueError, match="weight_decay_scope must be one of"):
        param_groups(model, 0.1, "no_norms")


@pytest.mark.parametrize(
    "recipe", ["modelnet40.yaml", "scanobjectnn_pointmlp.yaml", "scanobjectnn_pointmlp_coc.yaml"]
)
def test_official_point_recipes_decay_everything(recipe):
    train = load_config(f"experiments/configs/{recipe}")["train"]
    assert train["weight_decay_scope"] == "all"
    # pointMLP-pytorch clips gradients at norm 1 on ModelNet40 only (classification_ModelNet40/main.py).
    assert train["grad_clip"] == (1.0 if recipe == "modelnet40.yaml" else None)
