"""Run configuration: typed sections, YAML recipes (with ``_base_`` includes) and ``--set key=value``
overrides with dotted keys.

Relative paths (``PATH_KEYS``) in a recipe file are relative to that file's folder, and in ``--set`` to the
current directory; both are made absolute at load, so a run's ``config.yaml`` works from anywhere.

A config is assembled as plain nested dictionaries (defaults <- recipe files <- overrides, unknown keys
refused), then converted once into a :class:`RunConfig`: every value is checked and cast to its field's type
there, so the engine reads ``config.train.lr`` as a float and never casts again. ``to_dict()`` gives back the
YAML form (for ``config.yaml``, checkpoints and diffs).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import torch
import yaml

from ..data.image_augment import ImageRecipe, image_recipe


@dataclass(frozen=True)
class ModelConfig:
    name: str = "pointmlp_coc_elite"
    kwargs: dict[str, Any] = field(default_factory=dict)  # to the model's constructor


@dataclass(frozen=True)
class DataConfig:
    name: str = "procedural"
    root: str | None = None
    split: str | None = "test"  # evaluated once after training and by `main.py test`; null: none
    train_split: str | None = "train"  # null: a set with one unnamed split (an unprefixed MNIST pair)
    val_split: str | None = "val"  # null: hold out val_fraction of the training split instead
    val_fraction: float = 0.2
    test_fraction: float = 0.0  # > 0 with split null: hold out a test part of the training split too
    # how the validation part is held out (val_split null): random (stratified: each class in proportion) or
    # balanced (the same number of samples from every class, as ModelNet's nearly balanced test splits); a
    # test part (test_fraction) is stratified either way
    holdout: Literal["random", "balanced"] = "random"
    num_points: int = 1024
    augment: bool = True
    kwargs: dict[str, Any] = field(default_factory=dict)  # to build_dataset (aug_*, per_class, variant, ...)
    image_recipe: dict[str, Any] = field(default_factory=dict)  # ImageRecipe fields for image sets
    num_workers: int = 0

    def recipe(self, **defaults: Any) -> ImageRecipe:
        """The image recipe: ``defaults`` (e.g. the run's label smoothing), then ``image_recipe``."""
        return image_recipe({**defaults, **self.image_recipe})


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 300  # length of the warm-up + cosine schedule
    cooldown_epochs: int = 0  # then this many at min_lr (timm's --cooldown-epochs)
    batch_size: int = 32  # global: split evenly across DDP ranks
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    lr_reference_batch: int | None = None  # scale lr by batch_size / this (linear scaling rule)
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 2e-4
    # all: every parameter (the official point scripts); no_norm_bias: weights only (timm, the image recipe)
    weight_decay_scope: Literal["all", "no_norm_bias"] = "no_norm_bias"
    min_lr: float = 0.005
    warmup_epochs: float = 0.0
    warmup_lr: float = 1e-6
    label_smoothing: float = 0.2
    grad_clip: float | None = None
    amp: Literal["bf16", "fp16"] | None = None
    ema_decay: float | None = None  # e.g. 0.999: keep EMA weights, evaluate and select with them
    eval_every: int = 1
    # heldout (ours): select the epoch on the validation split by `select_on`, score the test split once with
    # those weights and once with the last epoch's; official (the published point tables): no validation
    # split, the test split scored every epoch, the best test epoch kept (mAcc a separate maximum)
    protocol: Literal["heldout", "official"] = "heldout"
    select_on: Literal["oa", "macc"] = "oa"  # the validation figure the heldout protocol maximises
    # none; sampler: draw training samples with probability 1 / (their class's count); loss: weight each
    # class's loss term by S / (K * its count) (scikit-learn's "balanced" weights)
    class_balance: Literal["none", "sampler", "loss"] = "none"


@dataclass(frozen=True)
class RuntimeConfig:
    compile: bool = False
    threads: int = 0  # 0: torch's choice
    # BatchNorm statistics over the global batch when several processes train; auto: on for point models
    sync_bn: Literal["auto", True, False] = "auto"
    progress: bool = True
    grad_checkpointing: bool = False  # recompute block activations in backward (models that support it)


@dataclass(frozen=True)
class LogConfig:
    # TensorBoard cluster pictures (added by main.py) of the first `cluster_images` validation samples on
    # epoch 1, every `cluster_images_every` epochs and on the last (0: never)
    cluster_images_every: int = 10
    cluster_images: int = 4


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dictionaries and lists: the YAML form, loadable with ``weights_only``."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> RunConfig:
        """Defaults <- ``data`` (keys it leaves out keep their defaults; unknown keys are refused), checked
        and converted. Errors start with ``source``, where ``data`` came from."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a mapping of config keys, got {type(data).__name__}")
        merged = defaults()
        try:
            _merge(merged, data)
            return _convert_section(cls, merged, "")
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None


# Keys that may change between a checkpoint and the run resuming from it (data.root: the same data, moved).
RESUMABLE_CHANGES = ("runtime", "device", "data.num_workers", "data.root", "log")
# Keys holding a file system path: relative ones are resolved at load (see the module docstring).
PATH_KEYS = ("data.root",)
# Range checks beyond the types: (dotted key, test, what is expected); optional keys may also be null.
_RANGES = (
    ("seed", lambda v: v >= 0, "0 or more"),
    ("train.epochs", lambda v: v >= 1, "at least 1"),
    ("train.batch_size", lambda v: v >= 1, "at least 1"),
    ("train.eval_every", lambda v: v >= 1, "at least 1"),
    ("train.lr", lambda v: 0 < v < math.inf, "a positive number"),
    ("train.lr_reference_batch", lambda v: v >= 1, "at least 1"),
    ("train.momentum", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("train.betas", lambda v: all(0 <= b < 1 for b in v), "two numbers in [0, 1)"),
    ("train.weight_decay", lambda v: 0 <= v < math.inf, "0 or more"),
    ("train.min_lr", lambda v: 0 <= v < math.inf, "0 or more"),
    ("train.warmup_epochs", lambda v: 0 <= v < math.inf, "0 or more"),
    ("train.warmup_lr", lambda v: 0 <= v < math.inf, "0 or more"),
    ("train.label_smoothing", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("train.grad_clip", lambda v: 0 < v < math.inf, "a positive number (or null: no clipping)"),
    ("train.ema_decay", lambda v: 0 <= v <= 1, "in [0, 1] (or null: no EMA)"),
    ("data.num_points", lambda v: v >= 1, "at least 1"),
    ("data.val_fraction", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("data.test_fraction", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("data.num_workers", lambda v: v >= 0, "0 or more"),
    ("runtime.threads", lambda v: v >= 0, "0 or more"),
    ("log.cluster_images_every", lambda v: v >= 0, "0 (off) or more"),
    ("log.cluster_images", lambda v: v >= 0, "0 or more"),
)
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def defaults() -> dict[str, Any]:
    return RunConfig().to_dict()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _open_keys(cls: type = RunConfig, prefix: str = "") -> set[str]:
    """Dotted keys of the open dictionaries (``model.kwargs``, ``data.image_recipe``, ...): any key under them
    is passed through to a constructor, which checks it."""
    out = set()
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            out |= _open_keys(hint, f"{prefix}{f.name}.")
        elif typing.get_origin(hint) is dict:
            out.add(prefix + f.name)
    return out


OPEN_KEYS = frozenset(_open_keys())


def _is_open(path: list[str]) -> bool:
    return any(".".join(path[: i + 1]) in OPEN_KEYS for i in range(len(path)))


def _convert_section(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        key, hint = prefix + f.name, hints[f.name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(values[f.name], dict):
                raise ValueError(f"{key}: expected a mapping of keys, got {values[f.name]!r}")
            kwargs[f.name] = _convert_section(hint, values[f.name], key + ".")
        else:
            kwargs[f.name] = _convert(values[f.name], hint, key)
    config = cls(**kwargs)
    if cls is RunConfig:
        _check(config)
    return config


def _convert(value: Any, hint: Any, key: str) -> Any:
    """``value`` as type ``hint``, or one ValueError naming ``key`` and what it expects."""
    cast = _cast(value, hint)
    if cast is _FAIL:
        raise ValueError(f"{key}: expected {_describe(hint)}, got {value!r}")
    return cast


_FAIL = object()


def _cast(value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):  # only ``X | None`` is used
        return None if value is None else _cast(value, _not_none(args))
    if origin is Literal:  # compared with its type too: 1 == True, but 1 is no boolean
        return value if any(value == a and type(value) is type(a) for a in args) else _FAIL
    if origin is dict:
        return copy.deepcopy(value) if isinstance(value, dict) else _FAIL
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            return _FAIL
        items = tuple(_cast(v, a) for v, a in zip(value, args))
        return _FAIL if any(i is _FAIL for i in items) else items
    if isinstance(value, bool):
        return value if hint is bool else _FAIL  # true is no number, 1 no boolean
    if hint is int:
        return int(value) if isinstance(value, (int, float)) and float(value).is_integer() else _FAIL
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                return _FAIL
        return float(value) if isinstance(value, (int, float)) else _FAIL
    return value if isinstance(value, hint) else _FAIL


def _not_none(args: tuple[Any, ...]) -> Any:
    (inner,) = [a for a in args if a is not type(None)]
    return inner


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return f"{_describe(_not_none(args))} or null"
    if origin is Literal:  # booleans as YAML writes them
        return "one of " + ", ".join(str(a).lower() if isinstance(a, bool) else repr(a) for a in args)
    if origin is dict:
        return "a mapping"
    if origin is tuple:
        return f"a list of {len(args)} values, each {_describe(args[0])}"
    return _TYPE_NAMES[hint]


def _check(config: RunConfig) -> None:
    for key, ok, expected in _RANGES:
        value: Any = config
        for part in key.split("."):
            value = getattr(value, part)
        if value is not None and not ok(value):
            raise ValueError(f"{key}: expected {expected}, got {value!r}")
    if config.device != "auto":
        try:
            device = torch.device(config.device)
        except RuntimeError:
            device = None
        if device is None or device.type not in ("cpu", "cuda"):
            raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {config.device!r}")
    if config.data.holdout == "balanced" and config.data.val_split is not None:
        raise ValueError(
            "data.holdout balanced draws the validation part from the training split, but data.val_split "
            f"is {config.data.val_split!r}; set data.val_split to null or data.holdout to random"
        )
    if config.train.protocol == "official" and config.data.split is None and config.data.test_fraction == 0:
        raise ValueError(
            "train.protocol official selects the epoch on the test split, and this config has none: set "
            "data.split (or data.test_fraction with data.split null)"
        )
    if config.train.protocol == "official" and config.train.eval_every != 1:
        raise ValueError(
            "train.protocol official scores the test split every epoch, as the official scripts do; "
            f"set train.eval_every to 1 (got {config.train.eval_every})"
        )
    config.data.recipe()  # unknown or retired data.image_recipe keys fail here, at load


def parse_value(text: str) -> Any:
    """YAML scalar/list syntax, plus floats YAML 1.1 reads as strings (``1e-3``)."""
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ValueError(
            f"{text!r} is not a YAML value ({problem}); quote it, or close its brackets"
        ) from None
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


def _merge(config: dict[str, Any], update: dict[str, Any], prefix: str = "") -> None:
    """Merge ``update`` (the section at ``prefix``) into ``config`` key by key; open dictionaries whole."""
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        node: Any = config
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(value, dict) and isinstance(node, dict) and not _is_open(dotted.split(".")):
            _merge(config, value, dotted + ".")
        else:
            set_dotted(config, dotted, copy.deepcopy(value))


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["train.lr=0.01", "model.kwargs.k_neighbors=[8,8,8,8]"]`` -> ``{dotted key: value}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = parse_value(text)
        except ValueError as exc:
            raise ValueError(f"--set {key.strip()}: {exc}") from None
    return out


def resolve_paths(values: dict[str, Any], base: Path) -> dict[str, Any]:
    """``values`` (a recipe file's content, or overrides with dotted keys) with the relative paths of
    ``PATH_KEYS`` made absolute against ``base`` (``~`` expanded); other values untouched."""
    out = copy.deepcopy(values)
    for key in PATH_KEYS:
        section, name = key.split(".")
        for holder, leaf in ((out, key), (out.get(section), name)):
            if isinstance(holder, dict) and isinstance(holder.get(leaf), str) and holder[leaf].strip():
                path = Path(holder[leaf]).expanduser()
                holder[leaf] = str(path) if path.is_absolute() else os.path.abspath(base / path)
    return out


def _apply_recipe(config: dict[str, Any], path: Path, chain: tuple[Path, ...] = ()) -> None:
    """Merge the YAML file at ``path`` into ``config``, after its ``_base_`` recipes (one path or a list,
    relative to the file, applied in order), so a table row can state only what differs from its recipe.
    Open dictionaries (``*.kwargs``, ``data.image_recipe``) are replaced whole, as over the defaults."""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ValueError(f"config file {path} {what}")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ValueError(f"{path} is not valid YAML{where}: {problem}; fix the file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text file (not UTF-8); give a YAML recipe") from None
    if loaded is None:
        raise ValueError(f"config file {path} is empty; give a recipe, e.g. experiments/configs/default.yaml")
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
    _merge(config, resolve_paths(loaded, path.resolve().parent))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults <- the YAML file (after its ``_base_`` files) <- overrides; unknown keys are refused, and
    every value is checked against its key's type (one error naming the key). Relative paths resolve against
    the file's folder (in the file) or the current directory (in ``overrides``)."""
    config = defaults()
    if path is not None:
        _apply_recipe(config, Path(path))
    for key, value in resolve_paths(parse_overrides(overrides), Path.cwd()).items():
        set_dotted(config, key, value)
    return _convert_section(RunConfig, config, "")


def save_config(config: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


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
