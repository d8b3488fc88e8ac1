"""The model to visualise: rebuilt from a training checkpoint (``weights_only``) or a registered name.

What a model takes (points or images, how many points, the image size and normalisation) and whether it
has clusters to draw is what its ``model_cfg`` declares; a checkpoint's model declares what its run used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..engine.build import load_trained_model
from ..hub import create_model as create_pretrained
from ..hub.pretrained import class_names
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


def load_pretrained_model(name: str, pretrained: bool | str | Path = True, clusters: bool = True) -> VizModel:
    """Model ``name`` with a published checkpoint (``True``: its default, a tag, or a checkpoint file in a
    published layout), named by the label set of its size (see :func:`pointcoc.hub.pretrained.class_names`).
    ``clusters``: refuse models without cluster assignments to draw."""
    model = create_pretrained(name, pretrained=pretrained)
    model = _checked(model, name) if clusters else model.eval()
    source = str(pretrained) if pretrained is not True else "default checkpoint"
    return VizModel(model, name, source, class_names(model.model_cfg))


def load_checkpoint_model(path: str | Path, clusters: bool = True) -> VizModel:
    """The model a ``main.py train`` checkpoint holds (its EMA weights when the run kept them).
    ``clusters``: refuse models without cluster assignments to draw."""
    trained = load_trained_model(path)
    name = trained.config.model.name
    model = _checked(trained.model, name) if clusters else trained.model
    canonical = model.model_cfg.is_points and bool(trained.config.data.kwargs.get("canonical", False))
    return VizModel(model, name, str(path), trained.classes, canonical)


def top_predictions(
    logits: torch.Tensor, classes: list[str] | None, k: int = TOP_K
) -> list[tuple[str, float]]:
    """``[(class name, probability)]`` of the ``k`` best classes of one sample; empty without class names."""
    if classes is None:
        return []
    probs = torch.softmax(logits.float().reshape(-1), dim=0)
    values, indices = probs.topk(min(k, len(classes)))
    return [(classes[i], float(p)) for p, i in zip(values.tolist(), indices.tolist())]
