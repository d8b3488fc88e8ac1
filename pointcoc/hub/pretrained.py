"""``create_model(name, pretrained=...)``: a registered model with a published checkpoint or a file loaded."""

from __future__ import annotations

import os
from pathlib import Path

import torch.nn as nn

from ..compat import (
    apply_official_checkpoint,
    convert_to_model,
    load_official_checkpoint,
    read_official_checkpoint,
)
from ..data.modelnet_h5 import MODELNET40_CLASSES, SCANOBJECTNN_CLASSES
from ..models.model_cfg import ModelCfg
from ..models.registry import create_model as build_model
from ..utils.imagenet import imagenet1k_classes
from .download import checkpoint_dir, download_file
from .zoo import ENTRIES, PretrainedEntry, pretrained_entry


def checkpoint_file(entry: PretrainedEntry, progress: bool = True) -> Path:
    """The cached file of ``entry``, downloaded on first use; entries without a direct URL are put into the
    cache by hand (the error says where)."""
    dest = checkpoint_dir() / entry.cache_name
    if dest.is_file():
        return dest
    if entry.url is None:
        direct = [e.name for e in ENTRIES if e.architecture == entry.architecture and e.url]
        hint = f"; {', '.join(direct)} can be downloaded directly" if direct else ""
        raise ValueError(
            f"{entry.name} has no direct download: fetch its checkpoint by hand from {entry.page} and save "
            f"it as {dest}, or pass the file's path as pretrained=PATH{hint}"
        )
    return download_file(entry.url, dest, entry.sha256, progress)


def resolve_pretrained(name: str, pretrained: bool | str | os.PathLike) -> PretrainedEntry | Path | None:
    """What ``pretrained`` names for model ``name`` (``architecture[.tag]``): a zoo entry, a local file, or
    nothing (random weights; a tag in ``name`` still names its entry, for its configuration)."""
    architecture, _, tag = name.partition(".")
    if pretrained is False or pretrained is None:
        return pretrained_entry(architecture, tag) if tag else None  # the tag's configuration, no weights
    if pretrained is True:
        return pretrained_entry(architecture, tag or None)
    if isinstance(pretrained, str) and f"{architecture}.{pretrained}" in {e.name for e in ENTRIES}:
        if tag and tag != pretrained:
            raise ValueError(f"model name {architecture}.{tag} and pretrained={pretrained!r} disagree")
        return pretrained_entry(architecture, pretrained)
    path = Path(pretrained).expanduser()
    if not path.is_file():
        tags = [e.tag for e in ENTRIES if e.architecture == architecture]
        known = f"a tag of {architecture} ({', '.join(tags)})" if tags else f"a tag ({architecture} has none)"
        raise ValueError(f"pretrained={os.fspath(pretrained)!r} is neither {known} nor an existing file")
    return path


def create_model(name: str, pretrained: bool | str | os.PathLike = False, **kwargs) -> nn.Module:
    """Build model ``name`` (``architecture`` or ``architecture.tag``) and load weights into it.

    ``pretrained``: ``False`` (random weights), ``True`` (the tag in ``name``, else the architecture's default
    checkpoint: the first of :func:`list_pretrained`), a tag (``"openmixup_in1k"``) or the path of a
    checkpoint file in any published layout (works offline; ``num_classes`` defaults to its classifier's). A
    zoo checkpoint is downloaded into the cache on first use and fixes ``num_classes`` and the cluster
    normaliser (``aggregation``); other keyword arguments go to the model's constructor. The model is
    returned in training mode, as built.
    """
    architecture = name.partition(".")[0]
    source = resolve_pretrained(name, pretrained)
    if isinstance(source, PretrainedEntry):
        for key, value in (("num_classes", source.num_classes), ("aggregation", source.aggregation)):
            if kwargs.setdefault(key, value) != value:
                raise ValueError(
                    f"{source.name} was trained with {key}={value!r}, not {kwargs[key]!r}; build it with "
                    f"{key}={value!r} (and replace the classifier afterwards to fine-tune)"
                )
    model = build_model(architecture, **kwargs)
    if isinstance(source, Path):
        checkpoint = read_official_checkpoint(source)
        rows = None if "num_classes" in kwargs else _classifier_rows(model, checkpoint.state)
        if rows not in (None, model.model_cfg.num_classes):  # the file's label set, unless the caller says
            model = build_model(architecture, **{**kwargs, "num_classes": rows})
        apply_official_checkpoint(model, checkpoint, source)
    elif isinstance(source, PretrainedEntry) and pretrained:
        load_official_checkpoint(model, checkpoint_file(source), aggregation=source.aggregation)
    return model


def _classifier_rows(model: nn.Module, state: dict) -> int | None:
    """How many classes the checkpoint's classifier (``model``'s last Linear to its classes) has."""
    classes = model.model_cfg.num_classes
    heads = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == classes]
    weight = convert_to_model(model, state).get(f"{heads[-1]}.weight") if heads else None
    return weight.shape[0] if weight is not None and weight.dim() == 2 else None


def class_names(model_cfg: ModelCfg) -> list[str] | None:
    """The names of the label set the published checkpoints of this kind and size were trained on: ImageNet-1k
    (images, 1000 classes), ModelNet40 (points, 40) or ScanObjectNN (points, 15); ``None`` otherwise."""
    if not model_cfg.is_points and model_cfg.num_classes == 1000:
        return [c.words for c in imagenet1k_classes()]
    known = {40: MODELNET40_CLASSES, 15: SCANOBJECTNN_CLASSES} if model_cfg.is_points else {}
    names = known.get(model_cfg.num_classes)
    return list(names) if names else None
