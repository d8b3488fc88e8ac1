"""The official image training recipe (timm flags of the CoC ImageNet runs) as batched kornia ops.

kornia is imported when a pipeline is built, so ``pointcoc.data`` imports without it. Differences from timm
that kornia imposes, kept deliberately small and listed here rather than hidden:
- RandAugment: kornia's magnitude scale is 0..30, so timm's m9 (of 10) is m=27; kornia has no magnitude noise
  (timm's mstd0.5) and applies its operations with the same draw to the whole batch.
- timm switches colour jitter off whenever RandAugment is on; ``force_color_jitter`` keeps it anyway.
- Random erasing fills with zeros (kornia) where timm's "pixel" mode fills with Gaussian noise.
- CutMix draws one box per sample (kornia) where timm's default "batch" mode draws one per batch; the label
  weight is the exact pasted area in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..utils.constants import IMAGENET_MEAN, IMAGENET_STD


@dataclass
class ImageRecipe:
    image_size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    hflip: float = 0.5
    randaugment_n: int = 2
    randaugment_m: int = 27  # timm m9 on kornia's 0..30 scale; 0 disables RandAugment
    color_jitter: float = 0.4
    force_color_jitter: bool = False
    erase_prob: float = 0.25
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.1
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


def _kornia():
    try:
        import kornia.augmentation as K
    except ImportError as exc:
        raise ImportError(
            f"batched image augmentation needs kornia ({exc}); `pip install kornia>=0.7`"
        ) from None
    return K


class ImageTrainAugment(nn.Module):
    """uint8 ``[B, C, H, W]`` images and int labels -> normalised float images and soft targets ``[B, K]``.

    Runs on whatever device the batch is on (move the batch to the GPU first).
    """

    def __init__(self, num_classes: int, recipe: ImageRecipe | None = None) -> None:
        super().__init__()
        K = _kornia()
        from kornia.augmentation.auto import RandAugment

        r = recipe or ImageRecipe()
        self.recipe, self.num_classes = r, num_classes
        ops: list[nn.Module] = [
            K.RandomResizedCrop((r.image_size, r.image_size), scale=r.scale, resample="bicubic"),
            K.RandomHorizontalFlip(p=r.hflip),
        ]
        if r.randaugment_m > 0:
            ops.append(RandAugment(n=r.randaugment_n, m=r.randaugment_m))
        if r.color_jitter > 0 and (r.randaugment_m == 0 or r.force_color_jitter):
            ops.append(K.ColorJitter(r.color_jitter, r.color_jitter, r.color_jitter, p=1.0))
        ops.append(K.Normalize(mean=torch.tensor(r.mean), std=torch.tensor(r.std)))
        if r.erase_prob > 0:
            ops.append(K.RandomErasing(p=r.erase_prob))
        self.ops = nn.Sequential(*ops)
        self.cutmix = None
        if r.cutmix_alpha > 0:
            self.cutmix = K.RandomCutMixV2(
                beta=r.cutmix_alpha, data_keys=["input", "class"], use_correct_lambda=True
            )
        self.mixup_kind = K.RandomMixUpV2  # built per batch: kornia takes the mixing weight at construction

    @torch.no_grad()
    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.ops(to_float(images))
        return self.mix(x, labels)

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
