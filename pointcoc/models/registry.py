"""Model registry in the style of timm: variants registered by name, built by :func:`create_model`."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Sequence
from typing import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_FAMILIES: dict[str, str] = {}
_PRETRAINED: dict[str, tuple[str, ...]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a model constructor under its function name."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = fn
    _FAMILIES[name] = fn.__module__.rsplit(".", 1)[-1]
    return fn


def register_pretrained(name: str, tags: Sequence[str]) -> None:
    """Declare the published checkpoints of model ``name`` (the zoo, :mod:`pointcoc.hub.zoo`, does); they
    appear in ``model_cfg.pretrained``."""
    _PRETRAINED[name] = tuple(tags)


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Sorted names of registered models matching a shell-style ``pattern``.

    ``family`` filters by the defining module's name, e.g. ``"pointmlp"`` or ``"context_cluster"``.
    """
    return sorted(
        n for n in _MODELS if fnmatch.fnmatch(n, pattern) and (family is None or _FAMILIES[n] == family)
    )


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name``; keyword arguments override its configuration.

    The model's ``model_cfg`` (see :class:`pointcoc.models.model_cfg.ModelCfg`) names the architecture and
    its published checkpoints; ``pointcoc.create_model(name, pretrained=...)`` loads one."""
    if name not in _MODELS:
        close = fnmatch.filter(_MODELS, f"*{name.split('_')[0]}*")
        hint = f"; similar: {', '.join(sorted(close))}" if close else ""
        raise ValueError(
            f"unknown model {name!r}{hint}. pointcoc.list_models() names all {len(_MODELS)} models"
        )
    model = _MODELS[name](**kwargs)
    model.model_cfg = dataclasses.replace(
        model.model_cfg, architecture=name, pretrained=_PRETRAINED.get(name, ())
    )
    return model
