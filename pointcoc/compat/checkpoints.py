"""Checkpoint files in the layouts they were published in, loaded into our models with their normaliser.

Layouts, told apart by the file's top-level keys:

- ``timm``: Context-Cluster's image ``train.py`` (a timm fork) saves through timm's ``CheckpointSaver``:
  ``epoch``, ``arch``, ``state_dict`` (``module.`` prefixes when trained distributed), ``optimizer``,
  ``version``, ``metric``, ``args`` (an ``argparse.Namespace``) and, with ``--model-ema``, ``state_dict_ema``.
- ``mmcv``: openmixup (mmcv's ``save_checkpoint``): ``meta``, ``optimizer`` and ``state_dict`` with the
  backbone under ``backbone.`` (block norms named ``gn1``/``gn2``), the classifier as ``head.fc.``, and, when
  trained with openmixup's ``EMAHook``, the averaged weights as top-level ``ema_<name with _ for .>`` buffers.
- ``pointmlp``: pointMLP-pytorch and Context-Cluster's ``pointcloud/main.py``: ``net`` (a DataParallel state
  dict, ``module.`` prefixes), ``epoch``, ``acc``, ``best_test_acc``, ... and ``optimizer``.
- ``pointcoc``: a ``main.py train`` checkpoint (``model`` and ``config``).
- ``state_dict``: a bare state dict.

Context-Cluster files made before the 31 May 2023 fix, and every openmixup file, were trained with the
``count`` normaliser (``mask.sum``); the files since with ``similarity`` (``sim.sum``). The normaliser is not
in the keys of a March-2023 timm file, so its caller says it; openmixup files and files with the Conv2d(1x1)
MLPs of the pre-June-2023 code imply ``count``. The pre-release layout (a ``fea_pos`` buffer, Context-Cluster
issues #12 and #17) loads in no released code and is refused.

Only ``torch.load(weights_only=True)`` is used, allowing the harmless types these files hold
(:data:`pointcoc.utils.serialization.PUBLISHED_CHECKPOINT_GLOBALS`); a pickle that would run code is refused.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, NamedTuple

import torch
import torch.nn as nn

from ..cluster.op import Aggregation, check_aggregation
from ..layers import ClusterMixer
from ..models.pointmlp import PointMLP
from ..models.pointmlp import convert_official_state_dict as convert_pointmlp
from ..utils.serialization import (
    PUBLISHED_CHECKPOINT_GLOBALS,
    StateDict,
    load_state_dict_strict,
    safe_load,
)

# What replaces the pre-release files, by the names of pointcoc.list_pretrained().
PRE_RELEASE_REPLACEMENTS = (
    "the Feb-2024 re-trains coc_tiny.official_in1k, coc_tiny_plain.official_in1k, coc_small.official_in1k, "
    "coc_medium.official_in1k (or the March-2023 coc_tiny_plain.official_in1k_2023_03)"
)
_OPENMIXUP_NORM = re.compile(r"^(network\.\d+\.\d+\.)gn([12])\.")
_MLP_WEIGHT = re.compile(r"(^|\.)mlp\.fc[12]\.weight$")


class OfficialCheckpoint(NamedTuple):
    state: StateDict  # official key names (prefixes and layout-specific names removed)
    layout: str  # "timm", "mmcv", "pointmlp", "pointcoc" or "state_dict"
    aggregation: Aggregation | None  # the normaliser the layout implies; None: the file does not say


def read_official_checkpoint(path: str | os.PathLike, use_ema: bool = False) -> OfficialCheckpoint:
    """The weights of a published checkpoint file, its layout and the normaliser that layout implies."""
    path = os.fspath(path)
    checkpoint = safe_load(path, PUBLISHED_CHECKPOINT_GLOBALS)
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(checkpoint).__name__}")
    layout, state = _select_weights(checkpoint, path, use_ema)
    if layout == "mmcv":
        state = _from_openmixup(state)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        odd = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
        raise ValueError(f"{path}: the weights hold non-tensors ({', '.join(odd[:5])}); not a state dict")
    if "fea_pos" in state:
        raise ValueError(
            f"{path} is a pre-release Context-Cluster checkpoint (it has the 'fea_pos' buffer of the code "
            f"before March 2023), which no released code loads; use {PRE_RELEASE_REPLACEMENTS} instead"
        )
    conv_mlp = any(_MLP_WEIGHT.search(k) and v.dim() == 4 for k, v in state.items())
    aggregation = "count" if layout == "mmcv" or conv_mlp else None
    return OfficialCheckpoint(state, layout, aggregation)


def _select_weights(checkpoint: dict[str, Any], path: str, use_ema: bool) -> tuple[str, dict]:
    if "net" in checkpoint:
        layout, key = "pointmlp", "net"
    elif "meta" in checkpoint and "state_dict" in checkpoint:
        layout, key = "mmcv", "state_dict"
    elif "state_dict" in checkpoint or "state_dict_ema" in checkpoint:
        layout, key = "timm", "state_dict_ema" if use_ema else "state_dict"
        if key not in checkpoint:
            hint = "load with use_ema=False" if use_ema else "it holds only EMA weights: pass use_ema=True"
            raise ValueError(f"{path} (timm layout) has no '{key}'; {hint}")
    elif "model" in checkpoint and "config" in checkpoint:
        layout, key = "pointcoc", "model"
    else:
        layout, key = "state_dict", None
    state = checkpoint if key is None else checkpoint[key]
    if not isinstance(state, dict) or not state:
        raise ValueError(
            f"{path}: no state dict of tensors found (looked for 'net', 'state_dict', 'state_dict_ema', "
            "'model' or a bare state dict)"
        )
    if use_ema and layout == "mmcv":
        return layout, _openmixup_ema(state, path)
    if use_ema and layout != "timm":
        raise ValueError(f"{path} ({layout} layout) holds no separate EMA weights; load with use_ema=False")
    if layout == "mmcv":  # openmixup's EMAHook buffers: not weights of the model (as mmcv loads them)
        state = {k: v for k, v in state.items() if not k.startswith("ema_")}
    return layout, state


def _openmixup_ema(state: dict, path: str) -> dict:
    """openmixup's EMAHook keeps the average of parameter ``a.b.c`` in the buffer ``ema_a_b_c``."""
    ema = {k: v for k, v in state.items() if k.startswith("ema_")}
    if not ema:
        raise ValueError(f"{path} (openmixup layout) has no 'ema_*' buffers; load with use_ema=False")
    weights = {k: v for k, v in state.items() if not k.startswith("ema_")}
    return {k: ema.get("ema_" + k.replace(".", "_"), v) for k, v in weights.items()}


def _from_openmixup(state: dict) -> dict:
    """openmixup's classifier keys -> the official image model's (``backbone.`` dropped, ``gn1``/``gn2`` ->
    ``norm1``/``norm2``, ``head.fc.`` -> ``head.``); other keys are left for the strict load to report."""
    out = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            key = _OPENMIXUP_NORM.sub(r"\1norm\2.", key.removeprefix("backbone."))
        elif key.startswith("head.fc."):
            key = "head." + key.removeprefix("head.fc.")
        out[key] = value
    return out


def convert_to_model(model: nn.Module, state: StateDict) -> StateDict:
    """Official key names and shapes -> ``model``'s (identity where they already agree)."""
    if isinstance(model, PointMLP):
        if set(state) <= set(model.state_dict()):
            return state
        return convert_pointmlp(state, model.config["cluster"])
    own = model.state_dict()
    return {
        # The pre-June-2023 image code ran its MLPs as Conv2d(1x1): the same matrices, 4-D.
        k: v.flatten(1) if k in own and own[k].dim() == 2 and v.dim() == 4 and v.shape[2:] == (1, 1) else v
        for k, v in state.items()
    }


def set_aggregation(model: nn.Module, aggregation: Aggregation) -> nn.Module:
    """Switch every cluster mixer of ``model`` to the normaliser ``aggregation`` and declare it in
    ``model.model_cfg`` (and the constructor ``config`` point models are rebuilt from)."""
    check_aggregation(aggregation)
    for module in model.modules():
        if isinstance(module, ClusterMixer):
            module.aggregation = aggregation
    if hasattr(model, "model_cfg"):
        model.model_cfg = dataclasses.replace(model.model_cfg, aggregation=aggregation)
    if isinstance(getattr(model, "config", None), dict) and "aggregation" in model.config:
        model.config["aggregation"] = aggregation
    return model


def load_official_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    aggregation: Aggregation | None = None,
    use_ema: bool = False,
) -> nn.Module:
    """Load a published checkpoint into ``model`` strictly and give ``model`` the file's cluster normaliser.

    ``aggregation``: the normaliser the file was trained with; ``None`` takes the one its layout implies
    (``count`` for openmixup and pre-June-2023 files) and otherwise leaves ``model``'s own (``similarity``
    unless built otherwise). Say ``"count"`` for the March-2023 Context-Cluster files. ``use_ema`` loads the
    exponential moving average (timm's ``state_dict_ema``, openmixup's ``ema_*`` buffers). Returns ``model``.
    """
    if aggregation is not None:
        check_aggregation(aggregation)
    return apply_official_checkpoint(model, read_official_checkpoint(path, use_ema), path, aggregation)


def apply_official_checkpoint(
    model: nn.Module,
    checkpoint: OfficialCheckpoint,
    source: str | os.PathLike,
    aggregation: Aggregation | None = None,
) -> nn.Module:
    """:func:`load_official_checkpoint` for a file already read (``source`` names it in errors)."""
    load_state_dict_strict(model, convert_to_model(model, checkpoint.state), source=source)
    chosen = aggregation or checkpoint.aggregation
    if chosen is not None:
        set_aggregation(model, chosen)
    return model
