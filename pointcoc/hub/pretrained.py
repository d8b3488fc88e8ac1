"""``create_model(name, pretrained=...)``: a registered model with a published checkpoint or a file loaded."""

from __future__ import annotations

import os
from pathlib import Path

import torch.nn as nn

from ..compat import load_official_checkpoint
from ..models.registry import create_model as build_model
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


def _resolve(
    architecture: str, tag: str, pretrained: bool | str | os.PathLike
) -> PretrainedEntry | Path | None:
    """What ``pretrained`` names: a zoo entry, a local file, or nothing (random weights)."""
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
    checkpoint file in any published layout (works offline). A zoo checkpoint is downloaded into the cache on
    first use and fixes ``num_classes`` and the cluster normaliser (``aggregation``); other keyword arguments
    go to the model's constructor. The model is returned in training mode, as built.
    """
    architecture, _, tag = name.partition(".")
    source = _resolve(architecture, tag, pretrained)
    if isinstance(source, PretrainedEntry):
        for key, value in (("num_classes", source.num_classes), ("aggregation", source.aggregation)):
            if kwargs.setdefault(key, value) != value:
                raise ValueError(
                    f"{source.name} was trained with {key}={value!r}, not {kwargs[key]!r}; build it with "
                    f"{key}={value!r} (and replace the classifier afterwards to fine-tune)"
                )
    model = build_model(architecture, **kwargs)
    if isinstance(source, Path):
        load_official_checkpoint(model, source)
    elif isinstance(source, PretrainedEntry) and pretrained:
        load_official_checkpoint(model, checkpoint_file(source), aggregation=source.aggregation)
    return model
