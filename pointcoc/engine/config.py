"""Run configuration: defaults, YAML recipes and ``--set key=value`` overrides with dotted keys."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

# Every key a recipe may set; a recipe or override naming any other key is refused (typos fail loudly).
# ``*.kwargs`` and ``data.image_recipe`` are open dictionaries passed through to constructors.
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "device": "auto",  # auto | cpu | cuda | cuda:N
    "model": {"name": "pointmlp_coc_elite", "kwargs": {}},
    "data": {
        "name": "procedural",
        "root": None,
        "split": "test",  # evaluated once after training and by `main.py test`; null: none
        "train_split": "train",
        "val_split": "val",  # null: hold out val_fraction of the training split instead
        "val_fraction": 0.2,
        "test_fraction": 0.0,  # > 0 with split null: hold out a test part of the training split too
        "num_points": 1024,
        "augment": True,
        "kwargs": {},  # to build_dataset (aug_* for point transforms, per_class, variant, channels, ...)
        "image_recipe": {},  # ImageRecipe fields for image sets
        "num_workers": 0,
    },
    "train": {
        "epochs": 300,  # length of the warm-up + cosine schedule
        "cooldown_epochs": 0,  # then this many at min_lr (timm's --cooldown-epochs)
        "batch_size": 32,  # global: split evenly across DDP ranks
        "optimizer": "sgd",  # sgd | adamw
        "lr": 0.1,
        "lr_reference_batch": None,  # scale lr by batch_size / this (linear scaling rule)
        "momentum": 0.9,
        "nesterov": False,
        "betas": [0.9, 0.999],
        "weight_decay": 2e-4,
        "weight_decay_scope": "no_norm_bias",  # all (the official point scripts) | no_norm_bias (timm)
        "min_lr": 0.005,
        "warmup_epochs": 0,
        "warmup_lr": 1e-6,
        "label_smoothing": 0.2,
        "grad_clip": None,
        "amp": None,  # null | bf16 | fp16
        "ema_decay": None,  # e.g. 0.999: keep EMA weights, evaluate and select with them
        "eval_every": 1,
    },
    "runtime": {
        "compile": False,
        "threads": 0,
        "sync_bn": False,
        "progress": True,
        "grad_checkpointing": False,  # recompute block activations in backward (models that support it)
    },
    # TensorBoard cluster pictures of the first `cluster_images` validation samples on epoch 1, every
    # `cluster_images_every` epochs and on the last (0: never); a few forwards of single samples each time
    "log": {"cluster_images_every": 10, "cluster_images": 4},
}

# Keys that may change between a checkpoint and the run resuming from it.
RESUMABLE_CHANGES = ("runtime", "device", "data.num_workers", "log")


def parse_value(text: str) -> Any:
    """YAML scalar/list syntax, plus floats YAML 1.1 reads as strings (``1e-3``)."""
    value = yaml.safe_load(text) if text.strip() else None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def set_dotted(config: dict[str, Any], key: str, value: Any, strict: bool = True) -> None:
    node = config
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node.get(part), dict):
            if strict and part not in node:
                raise ValueError(f"unknown config key {'.'.join(parts[: i + 1])!r} (in {key!r})")
            node[part] = {}
        node = node[part]
    leaf = parts[-1]
    if strict and leaf not in node and not _is_open(parts[:-1]):
        raise ValueError(f"unknown config key {key!r}; known under it: {sorted(node)}")
    node[leaf] = value


def _is_open(path: list[str]) -> bool:
    return bool(path) and (path[-1] in ("kwargs", "image_recipe") or any(p.endswith("kwargs") for p in path))


def _merge(base: dict[str, Any], update: dict[str, Any], prefix: str = "") -> None:
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(base.get(key), dict) and not _is_open(dotted.split(".")):
            _merge(base[key], value, dotted + ".")
        else:
            set_dotted(base, key, copy.deepcopy(value), strict=not _is_open(prefix.rstrip(".").split(".")))


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["train.lr=0.01", "model.kwargs.k_neighbors=[8,8,8,8]"]`` -> ``{dotted key: value}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = parse_value(text)
    return out


def _apply_recipe(config: dict[str, Any], path: Path, chain: tuple[Path, ...] = ()) -> None:
    """Merge the YAML file at ``path`` into ``config``, after its ``_base_`` recipes (one path or a list,
    relative to the file, applied in order), so a table row can state only what differs from its recipe.
    Open dictionaries (``*.kwargs``, ``data.image_recipe``) are replaced whole, as over the defaults."""
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} must hold a mapping of config keys, got {type(loaded).__name__}")
    bases = loaded.pop("_base_", [])
    for base in [bases] if isinstance(bases, str) else bases:
        base_path = (path.parent / base).resolve()
        if base_path in chain + (path.resolve(),):
            raise ValueError(f"{path}: _base_ {base!r} includes itself; remove the cycle")
        if not base_path.is_file():
            raise ValueError(
                f"{path}: _base_ file {base_path} does not exist; paths are relative to {path.parent}"
            )
        _apply_recipe(config, base_path, chain + (path.resolve(),))
    _merge(config, loaded)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Defaults <- the YAML file (after its ``_base_`` files) <- overrides; unknown keys are refused."""
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        _apply_recipe(config, Path(path))
    for key, value in parse_overrides(overrides).items():
        set_dotted(config, key, value)
    return config


def save_config(config: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config, sort_keys=False))


def differences(
    old: dict[str, Any], new: dict[str, Any], ignore: tuple[str, ...] = (), prefix: str = ""
) -> list[str]:
    """Dotted keys whose values differ, as ``key: old -> new`` (keys under ``ignore`` skipped)."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        dotted = f"{prefix}{key}"
        if any(dotted == i or dotted.startswith(i + ".") for i in ignore):
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, ignore, dotted + ".")
        elif a != b:
            out.append(f"{dotted}: {a!r} -> {b!r}")
    return out
