"""Image folders (every Pillow mode we convert), MNIST idx, sklearn digits and the batched kornia recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_data_layouts import SHARED_DATA, write_idx

from pointcoc.data import MNIST, Digits, ImageFolder, build_dataset, load_rgb


def test_image_folder_modes(tmp_path: Path) -> None:
    from PIL import Image

    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    images = {
        "gray.png": rgb.convert("L"),
        "palette.gif": rgb.convert("P"),
        "rgba.png": rgb.convert("RGBA"),
        "cmyk.jpg": rgb.convert("CMYK"),
        "plain.bmp": rgb,
    }
    for i, (name, im) in enumerate(images.items()):
        folder = tmp_path / "train" / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        im.save(folder / name)
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")
    ds = build_dataset("imagefolder", tmp_path, "train", image_size=16)
    assert ds.classes == ["a", "b"] and len(ds) == 5
    for i in range(len(ds)):
        x, y = ds[i]  # a random resized crop of the whole image
        assert x.shape == (3, 16, 16) and x.dtype == torch.uint8 and y.dtype == torch.int64
    ev = ImageFolder(tmp_path / "train", image_size=16, train=False)
    assert ev[0][0].shape == (3, 16, 16)
    assert load_rgb(tmp_path / "train" / "b" / "gray.png").mode == "RGB"


def test_real_photos() -> None:
    photos = SHARED_DATA / "photos"
    if not photos.is_dir():
        pytest.skip(f"{photos} is absent")
    for name in ("camera.png", "chessboard_GRAY.png", "no_time_for_that_tiny.gif", "rocket.jpg"):
        assert load_rgb(photos / name).mode == "RGB"
    with pytest.raises(ValueError, match="multipage_rgb.tif: cannot decode image"):
        load_rgb(photos / "multipage_rgb.tif")  # Pillow cannot read this planar multipage tif


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_idx(tmp_path: Path, compress: bool) -> None:
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (7, 28, 28)), rng.integers(0, 10, 7)
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images, compress)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels, compress)
    ds = MNIST(tmp_path, "test", channels=3)
    assert len(ds) == 7 and ds.num_classes == 10
    x, y = ds[2]
    assert x.shape == (3, 28, 28) and torch.equal(x[0], torch.from_numpy(images[2].astype(np.uint8)))
    assert int(y) == labels[2]


@pytest.mark.slow
def test_real_mnist() -> None:
    root = SHARED_DATA / "mnist"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    ds = build_dataset("mnist", root, split=None)
    assert len(ds) == 5000 and ds.images.shape == (5000, 1, 28, 28)
    assert set(ds.labels.tolist()) == set(range(10))


def test_digits_splits() -> None:
    splits = {s: Digits(s, seed=0) for s in ("train", "val", "test")}
    assert sum(len(d) for d in splits.values()) == 1797
    assert splits["train"][0][0].shape == (1, 8, 8) and splits["train"].images.max() == 255
    assert torch.equal(Digits("val", seed=0).images, splits["val"].images)
    assert not torch.equal(Digits("val", seed=1).images, splits["val"].images)


def test_kornia_recipe() -> None:
    pytest.importorskip("kornia")
    from pointcoc.data.image_augment import ImageEvalTransform, ImageRecipe, ImageTrainAugment, smooth_one_hot

    torch.manual_seed(0)
    images, labels = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8), torch.arange(6)
    aug = ImageTrainAugment(num_classes=10, recipe=ImageRecipe(image_size=32))
    for _ in range(4):  # both branches of the Mixup/CutMix switch
        x, target = aug(images, labels)
        assert x.shape == (6, 3, 32, 32) and x.dtype == torch.float32 and torch.isfinite(x).all()
        assert target.shape == (6, 10) and torch.allclose(target.sum(1), torch.ones(6))
    plain = ImageTrainAugment(10, ImageRecipe(image_size=32, mixup_alpha=0, cutmix_alpha=0))
    assert torch.allclose(plain(images, labels)[1], smooth_one_hot(labels, 10, 0.1))
    assert smooth_one_hot(labels, 10, 0.1)[0, 0].item() == pytest.approx(0.91)
    assert ImageEvalTransform()(images).shape == (6, 3, 32, 32)
