"""Checkpoints: written atomically, read with ``weights_only=True``, checked against the run's config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..data.image_augment import upgrade_retired_keys
from ..utils.serialization import safe_load
from .config import RESUMABLE_CHANGES, RunConfig, differences


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """Write to a temporary file in the same folder, then rename: a killed save leaves the old file intact."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Tensors and plain containers only: a pickle that would run code is refused."""
    state = safe_load(path)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"{path} is not a pointcoc training checkpoint (no 'model'/'config' entries)")
    return state


def checkpoint_config(state: dict[str, Any], path: str | Path) -> RunConfig:
    """The run config a checkpoint was trained with (keys added to the engine since get their defaults,
    retired image-recipe keys their replacement)."""
    config = state["config"]
    if isinstance(config, dict) and isinstance(config.get("data", {}).get("image_recipe"), dict):
        data = {**config["data"], "image_recipe": upgrade_retired_keys(config["data"]["image_recipe"])}
        config = {**config, "data": data}
    return RunConfig.from_dict(config, source=f"{path} (its config)")


def check_compatible(state: dict[str, Any], config: RunConfig, path: str | Path, resume: bool) -> None:
    """Refuse, in one line, a checkpoint of another model (``test``) or another config (``resume``).

    Both configs are compared in their typed form, so ``1e-3`` written as a string by an older engine equals
    ``0.001``."""
    old, new = checkpoint_config(state, path).to_dict(), config.to_dict()
    if resume:
        diff = differences(old, new, ignore=RESUMABLE_CHANGES)
    else:
        keys = ("model", "data.num_points")
        diff = differences({k: _get(old, k) for k in keys}, {k: _get(new, k) for k in keys})
    if diff:
        diff.sort(key=lambda d: (not d.startswith("model.name"), not d.startswith("model."), d))
        more = f" (and {len(diff) - 3} more)" if len(diff) > 3 else ""
        raise ValueError(f"{path} was made with a different config: {'; '.join(diff[:3])}{more}")


def _get(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node
