"""The model to visualise: rebuilt from a training checkpoint (``weights_only``) or a registered name.

What a model takes (points or images, how many points, the image size and normalisation) and whether it
has clusters to draw is what its ``model_cfg`` declares; a checkpoint's model declares what its run used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..data.image_augment import ImageRecipe
from ..engine.checkpoint import load_checkpoint
from ..engine.trainer import build_model, evaluation_weights, load_weights
from ..models import ModelCfg, create_model

TOP_K = 5


@dataclass
class VizModel:
    """A model in eval mode plus what is needed to name its predictions; its inputs follow its
    ``model_cfg`` (points per cloud, or image size, mean and std)."""

    model: nn.Module
    name: str
    source: str  # the checkpoint path, or "random weights"
    classes: list[str] | None  # None: predictions are not shown (no class names known)
    canonical: bool = False  # point models: put shapes in canonical pose first, as the run's data did

    @property
    def cfg(self) -> ModelCfg:
        return self.model.model_cfg

    @property
    def is_points(self) -> bool:
        return self.cfg.is_points


def _checked(model: nn.Module, name: str) -> nn.Module:
    if not model.model_cfg.has_clusters:
        raise ValueError(
            f"{name} has no clusters to show; visualise a CoC image model (coc_*), a PointMLP-family point "
            "model (pointmlp*) or a point-set CoC (pointset_coc*)"
        )
    return model.eval()


def load_named_model(name: str, seed: int = 0) -> VizModel:
    """A registered model with random weights (fixed ``seed``), to inspect an untrained model."""
    torch.manual_seed(seed)
    return VizModel(_checked(create_model(name), name), name, "random weights", None)


def _run_model(config: dict[str, Any], num_classes: int) -> nn.Module:
    """The model of a run config. Only the model says whether it takes points, so it is built as
    configured first and, a point model, again with the run's points per cloud if they differ."""
    model = build_model(config, num_classes, False)
    if model.model_cfg.is_points and model.model_cfg.num_points != int(config["data"]["num_points"]):
        model = build_model(config, num_classes, True)
    return model


def load_checkpoint_model(path: str | Path) -> VizModel:
    """The model a ``main.py train`` checkpoint holds (its EMA weights when the run kept them)."""
    path = Path(path)
    state = load_checkpoint(path)
    config, classes = state["config"], state.get("classes")
    if not classes:
        raise ValueError(f"{path} holds no class names; use a checkpoint written by `main.py train`")
    name, data = config["model"]["name"], config["data"]
    model = _checked(_run_model(config, len(classes)), name)
    load_weights(model, evaluation_weights(state), path)
    if model.model_cfg.is_points:
        canonical = bool(dict(data["kwargs"]).get("canonical", False))
        return VizModel(model, name, str(path), list(classes), canonical)
    recipe = ImageRecipe(**dict(data["image_recipe"]))
    model.model_cfg = dataclasses.replace(
        model.model_cfg, input_size=(3, recipe.image_size, recipe.image_size), mean=tuple(recipe.mean),
        std=tuple(recipe.std),
    )  # fmt: skip
    return VizModel(model, name, str(path), list(classes))


def top_predictions(
    logits: torch.Tensor, classes: list[str] | None, k: int = TOP_K
) -> list[tuple[str, float]]:
    """``[(class name, probability)]`` of the ``k`` best classes of one sample; empty without class names."""
    if classes is None:
        return []
    probs = torch.softmax(logits.float().reshape(-1), dim=0)
    values, indices = probs.topk(min(k, len(classes)))
    return [(classes[i], float(p)) for p, i in zip(values.tolist(), indices.tolist())]
