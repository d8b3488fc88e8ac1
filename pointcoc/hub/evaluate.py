"""Top-1/top-5 of an ImageNet-1k model on an ImageNet-layout folder (``<root>/<wnid>/<image>``), with the
official evaluation transform: shorter side to ``floor(224 / crop_pct)`` (248), bicubic, centre crop 224,
the model's mean/std. A folder may hold any subset of the 1000 classes: its class folders are mapped to the
model's labels by WordNet id, not by their position in the folder."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.image_augment import ImageEvalTransform
from ..data.images import ImageFolder
from ..utils.imagenet import imagenet1k_classes
from .pretrained import create_model, resolve_pretrained
from .zoo import PretrainedEntry

# ``main.py test --pretrained`` settings (``--set KEY=VALUE``), named as in the training configs.
TEST_SETTINGS = {"data.root": str, "data.split": str, "data.num_workers": int, "train.batch_size": int}


@dataclass(frozen=True)
class FolderScore:
    top1: float  # percent
    top5: float
    images: int
    classes: int
    root: Path


def imagenet_labels(classes: list[str], root: Path) -> torch.Tensor:
    """The ImageNet-1k label of each class folder name (a WordNet id such as ``n01440764``)."""
    index = {c.wnid: i for i, c in enumerate(imagenet1k_classes())}
    odd = [c for c in classes if c not in index]
    if odd:
        raise ValueError(
            f"{root}: class folders {', '.join(odd[:5])} are not ImageNet-1k WordNet ids; expected "
            "<root>/<wnid>/<image> (prepare ImageNet with `python -m datasets.imagenet`)"
        )
    return torch.tensor([index[c] for c in classes])


def evaluate_imagenet_folder(
    model: nn.Module, root: str | Path, batch_size: int = 64, workers: int = 0, progress: bool = True
) -> FolderScore:
    """Evaluate ``model`` (an image model with 1000 ImageNet classes, put in eval mode) on ``root``."""
    cfg = model.model_cfg
    if cfg.is_points or cfg.num_classes != 1000:
        raise ValueError(
            f"{cfg.architecture} ({cfg.input_kind}, {cfg.num_classes} classes) is not an ImageNet-1k image "
            "model; this evaluation needs one with 1000 classes"
        )
    dataset = ImageFolder(root, cfg.image_size, train=False, crop_ratio=cfg.crop_pct)
    labels = imagenet_labels(dataset.classes, Path(root))
    normalise = ImageEvalTransform(cfg.mean, cfg.std)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    model.eval()
    hits1 = hits5 = 0
    with torch.no_grad():
        for images, folder_labels in tqdm(loader, desc="evaluating", disable=not progress, file=sys.stderr):
            best = model(normalise(images)).topk(5, dim=1).indices
            target = labels[folder_labels].unsqueeze(1)
            hits1 += int((best[:, :1] == target).sum())
            hits5 += int((best == target).any(dim=1).sum())
    n = len(dataset)
    return FolderScore(100.0 * hits1 / n, 100.0 * hits5 / n, n, len(dataset.classes), Path(root))


def parse_settings(pairs: list[str]) -> dict[str, str | int]:
    """``["data.root=DIR", ...]`` -> ``{"data.root": "DIR", ...}``, only :data:`TEST_SETTINGS` keys."""
    settings: dict[str, str | int] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in TEST_SETTINGS:
            raise ValueError(f"--set {pair}: give KEY=VALUE with KEY one of {', '.join(TEST_SETTINGS)}")
        try:
            settings[key] = TEST_SETTINGS[key](value)
        except ValueError:
            raise ValueError(f"--set {pair}: {key} takes an integer") from None
    return settings


def evaluate_pretrained(name: str, pretrained: bool | str | Path, pairs: list[str]) -> str:
    """``main.py test --model NAME --pretrained TAG|PATH --set data.root=DIR``: the report to print.

    ``data.root`` is an ImageNet folder (its ``data.split`` sub-folder, default ``val``, is used when it
    exists) or a class-folder root itself."""
    settings = parse_settings(pairs)
    if "data.root" not in settings:
        raise ValueError(
            "test --pretrained needs --set data.root=DIR (an ImageNet folder, e.g. DIR/val/<wnid>/)"
        )
    root = Path(str(settings["data.root"])).expanduser()
    split = root / str(settings.get("data.split", "val"))
    folder = split if split.is_dir() else root
    model = create_model(name, pretrained=pretrained)
    score = evaluate_imagenet_folder(
        model, folder, int(settings.get("train.batch_size", 64)), int(settings.get("data.num_workers", 0))
    )
    source = resolve_pretrained(name, pretrained)
    published = (
        f"published {source.metrics['top1']:.1f} ({source.name}: {source.protocol})"
        if isinstance(source, PretrainedEntry) and "top1" in source.metrics
        else f"no published figure for {source}"
    )
    return "\n".join(
        [
            f"{name} on {folder}: {score.images:,} images in {score.classes} classes",
            f"top-1  {score.top1:6.2f}%   {published}",
            f"top-5  {score.top5:6.2f}%",
        ]
    )
