"""The model to visualise: rebuilt from a training checkpoint (``weights_only``) or a registered name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..data.image_augment import IMAGENET_MEAN, IMAGENET_STD, ImageRecipe
from ..engine.checkpoint import load_checkpoint
from ..engine.trainer import build_model, evaluation_weights, load_weights
from ..hub import create_model as create_pretrained
from ..hub.pretrained import class_names
from ..models import ContextCluster, PointMLP, PointSetCoC, create_model, list_models
from ..utils.constants import IMAGENET_CROP_PCT

TOP_K = 5
POINT_CLUSTER_MODELS = (PointMLP, PointSetCoC)  # point models whose clusters can be drawn


@dataclass
class VizModel:
    """A model in eval mode plus what is needed to prepare its inputs and name its predictions."""

    model: nn.Module
    name: str
    source: str  # the checkpoint path, or "random weights"
    classes: list[str] | None  # None: predictions are not shown (no class names known)
    num_points: int = 1024  # point models: points fed per cloud
    canonical: bool = False  # point models: put shapes in canonical pose first, as the run's data did
    image_size: int = 224  # image models: side of the square input
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = IMAGENET_CROP_PCT  # image models' evaluation crop (predictions; pictures show it all)

    @property
    def is_points(self) -> bool:
        return not isinstance(self.model, ContextCluster)


def _checked(model: nn.Module, name: str) -> nn.Module:
    if not isinstance(model, (ContextCluster, *POINT_CLUSTER_MODELS)):
        raise ValueError(
            f"{name} has no cluster assignments to show; visualise a CoC image model (coc_*), a "
            "PointMLP-family point model (pointmlp*) or a point-set CoC (pointset_coc*)"
        )
    return model.eval()


def load_named_model(name: str, seed: int = 0) -> VizModel:
    """A registered model with random weights (fixed ``seed``), to inspect an untrained model."""
    torch.manual_seed(seed)
    model = _checked(create_model(name), name)
    num_points = model.num_points if isinstance(model, POINT_CLUSTER_MODELS) else 1024
    return VizModel(model, name, "random weights", None, num_points=num_points)


def load_pretrained_model(name: str, pretrained: bool | str | Path = True, clusters: bool = True) -> VizModel:
    """Model ``name`` with a published checkpoint (``True``: its default, a tag, or a checkpoint file in a
    published layout), named by the label set of its size (see :func:`pointcoc.hub.pretrained.class_names`).
    ``clusters``: refuse models without cluster assignments to draw."""
    model = create_pretrained(name, pretrained=pretrained)
    model = _checked(model, name) if clusters else model.eval()
    cfg, source = model.model_cfg, str(pretrained) if pretrained is not True else "default checkpoint"
    if cfg.is_points:
        return VizModel(model, name, source, class_names(cfg), num_points=cfg.num_points)
    return VizModel(
        model, name, source, class_names(cfg), image_size=cfg.image_size, mean=cfg.mean, std=cfg.std,
        crop_pct=cfg.crop_pct,
    )  # fmt: skip


def load_checkpoint_model(path: str | Path, clusters: bool = True) -> VizModel:
    """The model a ``main.py train`` checkpoint holds (its EMA weights when the run kept them).
    ``clusters``: refuse models without cluster assignments to draw."""
    path = Path(path)
    state = load_checkpoint(path)
    config, classes = state["config"], state.get("classes")
    if not classes:
        raise ValueError(f"{path} holds no class names; use a checkpoint written by `main.py train`")
    name, data = config["model"]["name"], config["data"]
    is_points = name not in list_models(family="context_cluster")
    model = build_model(config, len(classes), is_points)
    model = _checked(model, name) if clusters else model.eval()
    load_weights(model, evaluation_weights(state), path)
    if isinstance(model, POINT_CLUSTER_MODELS):
        canonical = bool(dict(data["kwargs"]).get("canonical", False))
        return VizModel(model, name, str(path), list(classes), model.num_points, canonical)
    recipe = ImageRecipe(**dict(data["image_recipe"]))
    return VizModel(
        model, name, str(path), list(classes), image_size=recipe.image_size,
        mean=tuple(recipe.mean), std=tuple(recipe.std),
    )  # fmt: skip


def top_predictions(
    logits: torch.Tensor, classes: list[str] | None, k: int = TOP_K
) -> list[tuple[str, float]]:
    """``[(class name, probability)]`` of the ``k`` best classes of one sample; empty without class names."""
    if classes is None:
        return []
    probs = torch.softmax(logits.float().reshape(-1), dim=0)
    values, indices = probs.topk(min(k, len(classes)))
    return [(classes[i], float(p)) for p, i in zip(values.tolist(), indices.tolist())]
