"""The official image training recipe (the timm 0.6.13 ``train.py`` flags of the CoC ImageNet runs).

Where each step runs, in timm's order (timm ``transforms_factory.transforms_imagenet_train``, its
``PrefetchLoader`` and ``FastCollateMixup``, which the official script uses: the prefetcher is on by default):

- per image, in the loader workers (:mod:`pointcoc.data.images`): decode at full resolution, then
  RandomResizedCrop from the whole image (scale 0.08-1, ratio 3/4-4/3, bilinear or bicubic per image);
- batched here, on the batch's device: horizontal flip (0.5 per image); RandAugment
  ``rand-m9-mstd0.5-inc1`` with timm's per-image semantics (:mod:`pointcoc.data.rand_augment`); colour
  jitter only without RandAugment (timm turns it off when RandAugment is on) or when forced;
  normalisation; Mixup/CutMix (timm mixes in the collate); random erasing after mixing (timm's prefetcher
  erases after normalising the mixed batch), per image, filling with per-pixel N(0, 1) noise ("pixel").

Left different from timm: Mixup/CutMix run through kornia, whose mixing partner is a random permutation
(timm: the batch reversed) and whose CutMix draws one box per image (timm's "batch" mode: one per batch);
both weight the targets by the exact pasted area. timm's collate rounds the mixed images to uint8.
kornia is imported when a pipeline is built, so ``pointcoc.data`` imports without it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from ..utils.constants import IMAGENET_MEAN, IMAGENET_STD
from .images import RandomResizedCrop
from .rand_augment import RandAugment, parse_rand_augment

ERASE_MODES = ("pixel", "rand", "const")


@dataclass
class ImageRecipe:
    image_size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    interpolation: str = "random"  # of the random resized crop: bilinear | bicubic | random (per image)
    hflip: float = 0.5
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"  # timm's --aa string; null: no RandAugment
    color_jitter: float = 0.4
    force_color_jitter: bool = False
    erase_prob: float = 0.25
    erase_mode: str = "pixel"  # timm's --remode: pixel (N(0,1) per pixel) | rand (per channel) | const (0)
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.1
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def train_crop(self) -> RandomResizedCrop:
        """The per-image crop the training set applies in the loader workers."""
        return RandomResizedCrop(self.image_size, tuple(self.scale), tuple(self.ratio), self.interpolation)


# Keys of recipes written before timm's semantics: refused with what replaces them.
_REPLACED = {
    "randaugment_m": "auto_augment (timm's string, e.g. rand-m9-mstd0.5-inc1; kornia's m27 was timm's m9)",
    "randaugment_n": "auto_augment (timm's string: rand-n2-... sets the ops per image)",
}


def upgrade_retired_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """``data.image_recipe`` of a run saved before timm's RandAugment replaced kornia's: its
    ``randaugment_m`` (kornia's 0..30 scale) and ``randaugment_n`` as the equivalent ``auto_augment`` string
    (m 0: off), so old checkpoints still load; recipes are refused by :func:`image_recipe` instead."""
    values = dict(values)
    if not _REPLACED.keys() & values.keys():
        return values
    m, n = values.pop("randaugment_m", 27), values.pop("randaugment_n", 2)
    values.setdefault("auto_augment", f"rand-m{m / 3:g}-n{n}-mstd0.5-inc1" if m > 0 else None)
    return values


def image_recipe(values: Mapping[str, Any]) -> ImageRecipe:
    """An :class:`ImageRecipe` from ``data.image_recipe``; unknown keys fail with one line naming them."""
    known = {f.name for f in fields(ImageRecipe)}
    for key in values:
        if key in _REPLACED:
            raise ValueError(f"data.image_recipe.{key} no longer exists; use {_REPLACED[key]}")
        if key not in known:
            raise ValueError(f"data.image_recipe: unknown key {key!r}; known: {sorted(known)}")
    recipe = ImageRecipe(**dict(values))
    if recipe.erase_mode not in ERASE_MODES:
        raise ValueError(
            f"data.image_recipe.erase_mode must be one of {ERASE_MODES}, got {recipe.erase_mode!r}"
        )
    if recipe.auto_augment is not None:
        parse_rand_augment(recipe.auto_augment)  # fails early on a malformed string
    return recipe


def _kornia():
    try:
        import kornia.augmentation as K
    except ImportError as exc:
        raise ImportError(
            f"batched image augmentation needs kornia ({exc}); `pip install kornia>=0.7`"
        ) from None
    return K


class RandomErasing:
    """timm's ``RandomErasing`` (count 1) on a normalised ``[B, C, H, W]`` batch, per image.

    With probability ``probability`` an image gets one box: up to 10 tries of an area U(0.02, 1/3) of the
    image and a log-uniform aspect ratio in [0.3, 1/0.3], with sides ``round(sqrt(area * ratio))`` and
    ``round(sqrt(area / ratio))``, kept on the first try that fits strictly inside; its top-left corner
    is uniform. The box is filled with N(0, 1) noise per pixel ("pixel"), per channel ("rand") or 0.
    """

    def __init__(
        self, probability: float = 0.25, mode: str = "pixel", min_area: float = 0.02, max_area: float = 1 / 3
    ) -> None:
        if mode not in ERASE_MODES:
            raise ValueError(f"erase mode must be one of {ERASE_MODES}, got {mode!r}")
        self.probability, self.mode = probability, mode
        self.area = (min_area, max_area)
        self.log_aspect = (math.log(0.3), math.log(1 / 0.3))

    def box(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """``(top, left, h, w)`` for one image, or None (not erased, or no try fitted)."""
        if float(torch.rand(())) > self.probability:
            return None
        for _ in range(10):
            u = torch.rand(2, dtype=torch.float64).tolist()
            target = (self.area[0] + (self.area[1] - self.area[0]) * u[0]) * height * width
            aspect = math.exp(self.log_aspect[0] + (self.log_aspect[1] - self.log_aspect[0]) * u[1])
            h, w = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if w < width and h < height:
                return int(torch.randint(height - h + 1, ())), int(torch.randint(width - w + 1, ())), h, w
        return None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        for i in range(b):
            box = self.box(height, width)
            if box is None:
                continue
            top, left, h, w = box
            shape = (c, h, w) if self.mode == "pixel" else (c, 1, 1)
            fill = torch.randn(shape) if self.mode != "const" else torch.zeros(shape)
            x[i, :, top : top + h, left : left + w] = fill.to(x.device, x.dtype)
        return x


class ImageTrainAugment(nn.Module):
    """uint8 ``[B, C, S, S]`` crops (``S = recipe.image_size``, cut per image by the dataset) and int
    labels -> normalised float images and soft targets ``[B, K]``, on whatever device the batch is on."""

    def __init__(self, num_classes: int, recipe: ImageRecipe | None = None) -> None:
        super().__init__()
        K = _kornia()
        r = recipe or ImageRecipe()
        self.recipe, self.num_classes = r, num_classes
        self.flip = K.RandomHorizontalFlip(p=r.hflip) if r.hflip > 0 else None
        self.rand_augment = None
        if r.auto_augment is not None:
            fill = tuple(min(255, round(255 * m)) for m in r.mean)  # timm's img_mean hparam
            self.rand_augment = RandAugment(parse_rand_augment(r.auto_augment), fill)
        self.jitter = None
        if r.color_jitter > 0 and (r.auto_augment is None or r.force_color_jitter):
            self.jitter = K.ColorJitter(r.color_jitter, r.color_jitter, r.color_jitter, p=1.0)
        self.normalize = K.Normalize(mean=torch.tensor(r.mean), std=torch.tensor(r.std))
        self.erasing = RandomErasing(r.erase_prob, r.erase_mode) if r.erase_prob > 0 else None
        self.cutmix = None
        if r.cutmix_alpha > 0:
            self.cutmix = K.RandomCutMixV2(
                beta=r.cutmix_alpha, data_keys=["input", "class"], use_correct_lambda=True
            )
        self.mixup_kind = K.RandomMixUpV2  # built per batch: kornia takes the mixing weight at construction

    @torch.no_grad()
    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.recipe.image_size
        if images.shape[-2:] != (size, size):
            raise ValueError(
                f"training images arrive as {list(images.shape[-2:])} but image_recipe.image_size is {size}: "
                "the dataset must crop each image (build it with crop=recipe.train_crop())"
            )
        x = images.float()  # uint8 levels, as the Pillow images timm augments
        if self.flip is not None:
            x = self.flip(x)
        if self.rand_augment is not None:
            x = self.rand_augment(x)
        x = x.div_(255)
        if self.jitter is not None:
            x = self.jitter(x)
        x, targets = self.mix(self.normalize(x), labels)
        if self.erasing is not None:
            x = self.erasing(x)
        return x, targets

    def mix(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """timm's Mixup: per batch, CutMix with prob ``switch_prob`` else Mixup; smoothed, mixed targets."""
        r = self.recipe
        use_cutmix = self.cutmix is not None and (r.mixup_alpha <= 0 or float(torch.rand(())) < r.switch_prob)
        if use_cutmix:
            x, mixed = self.cutmix(x, labels)
            a, b, keep = mixed[0, :, 0], mixed[0, :, 1], mixed[0, :, 2]  # weight of the original label
        elif r.mixup_alpha > 0:
            lam = torch.distributions.Beta(r.mixup_alpha, r.mixup_alpha).sample().item()
            # kornia mixes as (1 - lam) * x + lam * x[perm]; one lam per batch as in timm
            mixup = self.mixup_kind(lambda_val=torch.tensor([lam, lam]), data_keys=["input", "class"])
            x, mixed = mixup(x, labels)
            a, b, keep = mixed[:, 0], mixed[:, 1], 1 - mixed[:, 2]
        else:
            return x, smooth_one_hot(labels, self.num_classes, r.label_smoothing)
        keep = keep.to(x.dtype)[:, None]
        targets = keep * smooth_one_hot(a.long(), self.num_classes, r.label_smoothing)
        return x, targets + (1 - keep) * smooth_one_hot(b.long(), self.num_classes, r.label_smoothing)


class ImageEvalTransform(nn.Module):
    """uint8 batch (already resized and centre-cropped by the dataset) -> normalised float."""

    def __init__(
        self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (to_float(images) - self.mean.to(images.device)) / self.std.to(images.device)


def to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """timm's label smoothing: ``smoothing / K`` everywhere, plus ``1 - smoothing`` on the true class."""
    off = smoothing / num_classes
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return out.scatter_(1, labels.view(-1, 1), 1.0 - smoothing + off)
