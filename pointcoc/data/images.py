"""Image datasets returning ``(uint8 [C, H, W], int64 label)``: decoding stays cheap on the CPU and the
float conversion and augmentation happen batched (see :mod:`pointcoc.data.image_augment`)."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ._io import SplitError, require_dir

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp", ".gif")
MNIST_HINT = "fetch it with `python -m datasets.mnist --root DIR`"


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


def resize_center_crop(image, short_side: int, crop: int) -> torch.Tensor:
    """Resize the shorter side to ``short_side`` (bicubic), centre-crop ``crop`` square, as uint8 CHW."""
    from PIL import Image

    w, h = image.size
    scale = short_side / min(w, h)
    image = image.resize((max(crop, round(w * scale)), max(crop, round(h * scale))), Image.Resampling.BICUBIC)
    w, h = image.size
    left, top = (w - crop) // 2, (h - crop) // 2
    image = image.crop((left, top, left + crop, top + crop))
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


class ImageFolder(Dataset):
    """ImageNet-style ``<root>/<class>/<image>`` folders, decoded with Pillow.

    ``train=True`` yields ``load_size`` squares (default ``image_size / 0.875``) for the batched random
    resized crop to cut from; ``train=False`` resizes the shorter side to ``image_size / crop_ratio`` and
    centre-crops ``image_size`` (the official evaluation: ratio 0.9, bicubic).
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int = 224,
        train: bool = True,
        crop_ratio: float = 0.9,
        load_size: int | None = None,
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
        if train:
            self.short_side = self.crop = load_size or round(image_size / 0.875)
        else:
            self.short_side, self.crop = round(image_size / crop_ratio), image_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path, label = self.samples[index]
        return resize_center_crop(load_rgb(path), self.short_side, self.crop), torch.tensor(label)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class TensorImages(Dataset):
    """Images already in memory as uint8 ``[S, C, H, W]``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: list[str], channels: int = 1) -> None:
        self.images = torch.from_numpy(np.array(images, dtype=np.uint8))  # copy: idx buffers are read-only
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.classes = classes
        self.channels = channels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
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

    def __init__(self, root: str | Path, split: str | None = "train", channels: int = 1) -> None:
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
        super().__init__(images[:, None], labels, [str(d) for d in range(10)], channels)


DIGITS_FRACTIONS = {"train": (0.0, 0.6), "val": (0.6, 0.8), "test": (0.8, 1.0)}


class Digits(TensorImages):
    """scikit-learn's bundled 8x8 digits (1797 images, no download), split 60/20/20 by a seeded shuffle."""

    def __init__(self, split: str = "train", seed: int = 0, channels: int = 1) -> None:
        from sklearn.datasets import load_digits

        if split not in DIGITS_FRACTIONS:
            raise SplitError(f"digits split must be one of {sorted(DIGITS_FRACTIONS)}, got {split!r}")
        digits = load_digits()
        order = np.random.default_rng(seed).permutation(len(digits.target))
        lo, hi = (round(f * len(order)) for f in DIGITS_FRACTIONS[split])
        chosen = order[lo:hi]
        images = np.round(digits.images[chosen] * (255 / 16)).astype(np.uint8)[:, None]  # 0..16 -> 0..255
        super().__init__(images, digits.target[chosen], [str(d) for d in range(10)], channels)
