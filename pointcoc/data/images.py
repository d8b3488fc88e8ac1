"""Image datasets returning ``(uint8 [C, H, W], int64 label)``: decoding and the per-image crop stay on the
CPU in the loader workers; the float conversion and the rest of the augmentation happen batched (see
:mod:`pointcoc.data.image_augment`)."""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ._io import SplitError, require_dir

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp", ".gif")
MNIST_HINT = "fetch it with `python -m datasets.mnist --root DIR`"
# timm's --train-interpolation values; "random" picks bilinear or bicubic per image
INTERPOLATIONS = ("bilinear", "bicubic", "random")


def load_rgb(path: str | Path):  # -> PIL.Image.Image (Pillow imported lazily)
    """Decode ``path`` to an RGB Pillow image (grayscale, palette, RGBA, CMYK; first animation frame)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.seek(0)
            if im.mode == "P" and "transparency" in im.info:
                im = im.convert("RGBA")  # Pillow warns when a transparent palette goes straight to RGB
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"{path}: cannot decode image ({exc}); remove or replace this file") from None


def pil_to_tensor(image) -> torch.Tensor:
    """An RGB Pillow image as uint8 ``[3, H, W]``."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def eval_resize(image_size: int, crop_ratio: float) -> int:
    """timm's evaluation resize: the shorter side to ``floor(image_size / crop_pct)`` (224 / 0.9 -> 248)."""
    return math.floor(image_size / crop_ratio)


def resize_center_crop(image, short_side: int, crop: int) -> torch.Tensor:
    """torchvision's ``Resize(short_side)`` (bicubic) then ``CenterCrop(crop)``, as uint8 CHW: the longer
    side becomes ``int(short_side * long / short)`` and the crop offsets ``round((size - crop) / 2)``."""
    from PIL import Image

    w, h = image.size
    if w <= h:
        size = (short_side, int(short_side * h / w))
    else:
        size = (int(short_side * w / h), short_side)
    image = image.resize(size, Image.Resampling.BICUBIC)
    top, left = int(round((size[1] - crop) / 2.0)), int(round((size[0] - crop) / 2.0))
    return pil_to_tensor(image.crop((left, top, left + crop, top + crop)))


@dataclass(frozen=True)
class RandomResizedCrop:
    """timm's ``RandomResizedCropAndInterpolation``: a crop of U(scale) of the whole image's area with a
    log-uniform aspect ratio in ``ratio`` (10 tries, then the central crop of the nearest allowed ratio),
    resized to ``size`` with bilinear or bicubic (``"random"``: one of them per image). Draws come from
    torch's generator, which DataLoader seeds per worker.

    Takes a decoded Pillow image (cropped then resized by Pillow, as torchvision's ``resized_crop``) or a
    uint8 ``[C, H, W]`` tensor (resized with antialiasing); returns uint8 ``[C, size, size]``.
    """

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    interpolation: str = "random"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if not (0 < self.scale[0] <= self.scale[1] and 0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"scale {self.scale} and ratio {self.ratio} must be increasing positive pairs")

    def params(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of the crop."""
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = _uniform(*self.scale) * area
            aspect = math.exp(_uniform(*log_ratio))
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if w <= width and h <= height:
                return _randint(height - h), _randint(width - w), h, w
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            w, h = int(round(height * max(self.ratio))), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def mode(self) -> str:
        if self.interpolation != "random":
            return self.interpolation
        return INTERPOLATIONS[int(torch.randint(2, ()))]

    def __call__(self, image) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            top, left, h, w = self.params(image.shape[-1], image.shape[-2])
            crop = image[None, :, top : top + h, left : left + w].float()
            resized = F.interpolate(crop, (self.size, self.size), mode=self.mode(), antialias=True)
            return resized[0].round_().clamp_(0, 255).to(torch.uint8)
        from PIL import Image

        top, left, h, w = self.params(*image.size)
        resample = Image.Resampling.BICUBIC if self.mode() == "bicubic" else Image.Resampling.BILINEAR
        cropped = image.crop((left, top, left + w, top + h))
        return pil_to_tensor(cropped.resize((self.size, self.size), resample))


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), dtype=torch.float64))


def _randint(high: int) -> int:
    """Uniform integer in ``[0, high]`` (inclusive, as Python's ``random.randint(0, high)``)."""
    return int(torch.randint(high + 1, ()))


class ImageFolder(Dataset):
    """ImageNet-style ``<root>/<class>/<image>`` folders, decoded with Pillow at full resolution.

    ``train=True`` returns ``crop`` (default: timm's :class:`RandomResizedCrop` to ``image_size``) of the
    whole decoded image; ``train=False`` resizes the shorter side to ``floor(image_size / crop_ratio)`` and
    centre-crops ``image_size`` (timm's evaluation, the official one with ratio 0.9, bicubic: 248 -> 224).
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int = 224,
        train: bool = True,
        crop_ratio: float = 0.9,
        crop: RandomResizedCrop | None = None,
    ) -> None:
        root = require_dir(root, "image", "expected <root>/<class>/<image files>")
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.samples = [
            (f, label)
            for label, c in enumerate(self.classes)
            for f in sorted((root / c).rglob("*"))
            if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()
        ]
        if not self.samples:
            raise FileNotFoundError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}/<class>/; "
                "expected one sub-folder per class"
            )
        if crop is not None and crop.size != image_size:
            raise ValueError(
                f"the training crop is {crop.size} pixels but image_size is {image_size}; set "
                "data.kwargs.image_size and data.image_recipe.image_size to the same value"
            )
        self.crop = (crop or RandomResizedCrop(image_size)) if train else None
        self.short_side, self.image_size = eval_resize(image_size, crop_ratio), image_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path, label = self.samples[index]
        image = load_rgb(path)
        if self.crop is not None:
            return self.crop(image), torch.tensor(label)
        return resize_center_crop(image, self.short_side, self.image_size), torch.tensor(label)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class TensorImages(Dataset):
    """Images already in memory as uint8 ``[S, C, H, W]``; ``crop`` (training) is applied per image."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        classes: list[str],
        channels: int = 1,
        crop: RandomResizedCrop | None = None,
    ) -> None:
        self.images = torch.from_numpy(np.array(images, dtype=np.uint8))  # copy: idx buffers are read-only
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.classes = classes
        self.channels = channels
        self.crop = crop  # per image, for training

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if self.crop is not None:
            image = self.crop(image)
        if self.channels != image.shape[0]:
            image = image.expand(self.channels, -1, -1)  # grayscale for 3-channel models
        return image, self.labels[index]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def read_idx(path: Path) -> np.ndarray:
    """An idx file (MNIST's format), gzipped or not, as a uint8 array of its declared shape."""
    raw = path.read_bytes()
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path} is a corrupt or truncated gzip file ({exc}); {MNIST_HINT}") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file (bad magic number); {MNIST_HINT}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4) if len(raw) >= header else np.array([-1])
    expected = header + int(np.prod(dims.astype(np.int64)))
    if len(raw) != expected:
        raise ValueError(
            f"{path} holds {len(raw)} bytes, not the {max(expected, header)} its header declares; "
            f"the file is truncated or corrupt: {MNIST_HINT}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(tuple(int(d) for d in dims))


MNIST_PREFIX = {"train": "train-", "test": "t10k-", None: ""}


def mnist_files(root: str | Path, split: str | None) -> tuple[Path, Path]:
    """``{prefix}images-idx3-ubyte[.gz]`` and labels; ``split=None`` takes an unprefixed pair."""
    if split not in MNIST_PREFIX:
        raise SplitError(
            f"MNIST split must be 'train', 'test' or None (an unprefixed file pair), got {split!r}"
        )
    root = require_dir(root, "MNIST", MNIST_HINT)
    found = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        name = MNIST_PREFIX[split] + kind
        hits = [root / n for n in (name, name + ".gz") if (root / n).is_file()]
        if not hits:
            raise FileNotFoundError(f"{root} has no {name}[.gz]; {MNIST_HINT}")
        found.append(hits[0])
    return found[0], found[1]


class MNIST(TensorImages):
    """MNIST from its idx files; ``channels=3`` repeats the gray channel for RGB models."""

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        channels: int = 1,
        crop: RandomResizedCrop | None = None,
    ) -> None:
        images_path, labels_path = mnist_files(root, split)
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{images_path} ({list(images.shape)}) and {labels_path} ({list(labels.shape)}) do not "
                f"pair up as [N, H, W] images and [N] labels; {MNIST_HINT}"
            )
        if labels.max(initial=0) > 9:
            raise ValueError(f"{labels_path} has labels outside [0, 10); {MNIST_HINT}")
        self.files = (images_path, labels_path)
        super().__init__(images[:, None], labels, [str(d) for d in range(10)], channels, crop)


DIGITS_FRACTIONS = {"train": (0.0, 0.6), "val": (0.6, 0.8), "test": (0.8, 1.0)}


class Digits(TensorImages):
    """scikit-learn's bundled 8x8 digits (1797 images, no download), split 60/20/20 by a seeded shuffle."""

    def __init__(
        self, split: str = "train", seed: int = 0, channels: int = 1, crop: RandomResizedCrop | None = None
    ) -> None:
        from sklearn.datasets import load_digits

        if split not in DIGITS_FRACTIONS:
            raise SplitError(f"digits split must be one of {sorted(DIGITS_FRACTIONS)}, got {split!r}")
        digits = load_digits()
        order = np.random.default_rng(seed).permutation(len(digits.target))
        lo, hi = (round(f * len(order)) for f in DIGITS_FRACTIONS[split])
        chosen = order[lo:hi]
        images = np.round(digits.images[chosen] * (255 / 16)).astype(np.uint8)[:, None]  # 0..16 -> 0..255
        super().__init__(images, digits.target[chosen], [str(d) for d in range(10)], channels, crop)
