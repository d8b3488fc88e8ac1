"""The model of a run: device and process set-up, ``build_model`` from a config, the interface the run fed
it (stored in checkpoints), and the trained model a checkpoint holds (its evaluation weights).

Whether a model takes point clouds or images is asked of the run's dataset (training, ``test``) or of the
model itself (``model.model_cfg``), never of its class.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..models import ModelCfg, create_model
from ..models.model_cfg import InputKind
from ..utils.serialization import load_state_dict_strict
from .checkpoint import checkpoint_config, load_checkpoint
from .config import RunConfig
from .distributed import Dist, init_distributed, local_rank


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use device=cpu")
    return device


def compile_model(model: nn.Module) -> nn.Module:
    """``torch.compile(model)`` with static shapes: training (``runtime.compile``) and ``main.py bench``.

    A point model runs each stage's code at another shape (and an epoch's last batch at another batch size);
    torch's automatic switch to a dynamic-shape graph on the second shape fails in Inductor on CPU
    (torch 2.13: "Exponent must be non-negative" in a stride check), so every shape gets its own static graph.
    """
    return torch.compile(model, dynamic=False)


def setup_process(config: RunConfig) -> tuple[torch.device, Dist]:
    """This process's device and place among the run's processes: joins the process group under torchrun
    (one GPU per process) and applies ``runtime.threads``."""
    device = resolve_device(config.device)
    dist = init_distributed(device.type)
    if device.type == "cuda" and dist.world > 1:
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    if config.runtime.threads > 0:
        torch.set_num_threads(config.runtime.threads)
    return device, dist


def build_model(config: RunConfig, num_classes: int, input_kind: InputKind | None = None) -> nn.Module:
    """The model ``config`` describes, for data of ``input_kind`` (what the run's dataset yields).

    Point models get ``data.num_points`` unless ``model.kwargs`` sets it. ``input_kind=None`` asks the model
    (a point model is then built twice: pass the kind when the weights drawn matter). A model of the other
    kind is refused in one line.
    """
    kwargs = dict(config.model.kwargs)
    model = None
    if input_kind is None:
        model = _create(config, num_classes, kwargs)
        input_kind = model.model_cfg.input_kind
    if input_kind == "points" and "num_points" not in kwargs:
        kwargs["num_points"] = config.data.num_points
        model = None
    if model is None:
        model = _create(config, num_classes, kwargs)
    if model.model_cfg.input_kind != input_kind:
        raise ValueError(_kind_error(config, model.model_cfg.input_kind, input_kind))
    if config.runtime.grad_checkpointing:
        if not hasattr(model, "set_grad_checkpointing"):
            raise ValueError(
                f"runtime.grad_checkpointing: {config.model.name} does not support it; set it to false"
            )
        model.set_grad_checkpointing(True)
    return model


def _create(config: RunConfig, num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    """The model; a constructor failing on the recipe's ``model.kwargs`` is refused naming them (without
    them, the failure is a bug and raised as it is)."""
    try:
        with warnings.catch_warnings():  # refused below, with the setting to blame
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            model = create_model(config.model.name, num_classes=num_classes, **kwargs)
        empty = next((name for name, p in model.named_parameters() if p.numel() == 0), None)
        if empty is not None:
            raise ValueError(f"its parameter {empty} would be empty")
        return model
    except Exception as exc:
        text = " ".join(str(exc).split())
        unexpected = isinstance(exc, TypeError) and "unexpected keyword argument" in text
        if unexpected and "'num_points'" in text and "num_points" not in config.model.kwargs:
            raise ValueError(_kind_error(config, "image", "points")) from None
        if "num_points" not in config.model.kwargs and "num_points" in kwargs and "points" in text:
            raise ValueError(
                f"data.num_points {kwargs['num_points']} does not fit {config.model.name}: {text[:200]}"
            ) from None
        if not config.model.kwargs or text.startswith("unknown model"):
            raise
        raise ValueError(
            f"model.kwargs do not fit {config.model.name}: {type(exc).__name__}: {text[:200]} (model.kwargs: "
            f"{config.model.kwargs}); see the model's constructor for its arguments"
        ) from None


def _kind_error(config: RunConfig, declared: str, data: str) -> str:
    return (
        f"model.name: {config.model.name} takes {declared} input but data.name {config.data.name!r} yields "
        f"{data}; choose a model and a dataset of the same kind"
    )


def run_model_cfg(
    model_cfg: ModelCfg, config: RunConfig, input_size: tuple[int, ...] | None = None
) -> ModelCfg:
    """``model_cfg`` with the values the run's data used: point models the ``data.num_points`` fed per cloud,
    image models the recipe's mean/std and ``input_size`` (an evaluation image's ``[C, H, W]``; by default
    the recipe's square ``image_size`` with the model's channels)."""
    if model_cfg.is_points:
        return dataclasses.replace(model_cfg, input_size=(config.data.num_points, *model_cfg.input_size[1:]))
    recipe = config.data.recipe()
    if input_size is None:
        input_size = (model_cfg.input_size[0], recipe.image_size, recipe.image_size)
    return dataclasses.replace(
        model_cfg, input_size=tuple(input_size), mean=tuple(recipe.mean), std=tuple(recipe.std)
    )


def evaluation_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights a checkpoint is evaluated with: the EMA copy when the run kept one."""
    if state.get("ema") is None:
        return state["model"]
    return {k[len("module.") :]: v for k, v in state["ema"].items() if k.startswith("module.")}


@dataclass
class TrainedModel:
    """What a training checkpoint holds, ready to predict: the model (eval mode, evaluation weights), its
    interface as the run's data fed it, the run's config and the class names."""

    model: nn.Module
    model_cfg: ModelCfg
    config: RunConfig
    classes: list[str]
    path: Path


def load_trained_model(path: str | Path) -> TrainedModel:
    """The model a ``main.py train`` checkpoint holds (its EMA weights when the run kept them).

    Checkpoints written before runs stored their ``model_cfg`` get one derived from their config."""
    path = Path(path)
    state = load_checkpoint(path)
    classes = state.get("classes")
    if not classes:
        raise ValueError(f"{path} holds no class names; use a checkpoint written by `main.py train`")
    config = checkpoint_config(state, path)
    stored = ModelCfg.from_dict(state["model_cfg"]) if state.get("model_cfg") else None
    model = build_model(config, len(classes), stored.input_kind if stored else None)
    load_state_dict_strict(model, evaluation_weights(state), path)
    # the model declares what its run fed it (points per cloud, image size and normalisation)
    model.model_cfg = stored or run_model_cfg(model.model_cfg, config)
    return TrainedModel(model.eval(), model.model_cfg, config, list(classes), path)
