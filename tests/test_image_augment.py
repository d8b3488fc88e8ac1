"""The ImageNet training recipe with timm's semantics: crops of the whole image, per-image RandAugment
(every op against Pillow), random erasing after mixing, the evaluation resize."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pointcoc.data.image_augment import ImageRecipe, ImageTrainAugment, RandomErasing, image_recipe
from pointcoc.data.images import ImageFolder, RandomResizedCrop, eval_resize, pil_to_tensor
from pointcoc.data.rand_augment import (
    LEVEL_TO_ARG,
    NAME_TO_OP,
    RandAugment,
    RandAugmentConfig,
    parse_rand_augment,
)

Image = pytest.importorskip("PIL.Image")
ImageEnhance = pytest.importorskip("PIL.ImageEnhance")
ImageOps = pytest.importorskip("PIL.ImageOps")

FILL = (124, 116, 104)  # timm's img_mean for the ImageNet mean: round(255 * mean)


def random_image(h: int = 20, w: int = 24, seed: int = 0):
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    arr[:, :, 2] = arr[:, :, 2] // 4 + 60  # a narrow channel, so autocontrast stretches something
    return Image.fromarray(arr)


def as_levels(image) -> torch.Tensor:
    return pil_to_tensor(image)[None].float()


def affine(image, matrix, bicubic):
    resample = Image.Resampling.BICUBIC if bicubic else Image.Resampling.BILINEAR
    return image.transform(image.size, Image.Transform.AFFINE, matrix, resample=resample, fillcolor=FILL)


def f64(value: float) -> torch.Tensor:
    return torch.tensor([value], dtype=torch.float64)


SOLARIZE_ADD_LUT = [min(255, i + 77) if i < 128 else i for i in range(256)] * 3
# (our op, its argument, what timm calls on the Pillow image)
POINT_CASES = [
    ("AutoContrast", None, ImageOps.autocontrast),
    ("Equalize", None, ImageOps.equalize),
    ("Invert", None, ImageOps.invert),
    ("PosterizeIncreasing", 0, lambda im: ImageOps.posterize(im, 0)),
    ("PosterizeIncreasing", 1, lambda im: ImageOps.posterize(im, 1)),
    ("PosterizeIncreasing", 4, lambda im: ImageOps.posterize(im, 4)),
    ("SolarizeIncreasing", 100, lambda im: ImageOps.solarize(im, 100)),
    ("SolarizeAdd", 77, lambda im: im.point(SOLARIZE_ADD_LUT)),
    ("ColorIncreasing", 0.3, lambda im: ImageEnhance.Color(im).enhance(0.3)),
    ("ColorIncreasing", 1.7, lambda im: ImageEnhance.Color(im).enhance(1.7)),
    ("ContrastIncreasing", 0.3, lambda im: ImageEnhance.Contrast(im).enhance(0.3)),
    ("ContrastIncreasing", 1.7, lambda im: ImageEnhance.Contrast(im).enhance(1.7)),
    ("BrightnessIncreasing", 1.7, lambda im: ImageEnhance.Brightness(im).enhance(1.7)),
    ("SharpnessIncreasing", 0.3, lambda im: ImageEnhance.Sharpness(im).enhance(0.3)),
    ("SharpnessIncreasing", 1.7, lambda im: ImageEnhance.Sharpness(im).enhance(1.7)),
]
GEOMETRIC_CASES = [
    ("Rotate", 17.0, lambda im, bic: im.rotate(17.0, resample=3 if bic else 2, fillcolor=FILL)),
    ("Rotate", -23.5, lambda im, bic: im.rotate(-23.5, resample=3 if bic else 2, fillcolor=FILL)),
    ("ShearX", 0.2, lambda im, bic: affine(im, (1, 0.2, 0, 0, 1, 0), bic)),
    ("ShearY", -0.25, lambda im, bic: affine(im, (1, 0, 0, -0.25, 1, 0), bic)),
    ("TranslateXRel", 0.3, lambda im, bic: affine(im, (1, 0, 0.3 * im.size[0], 0, 1, 0), bic)),
    ("TranslateYRel", -0.2, lambda im, bic: affine(im, (1, 0, 0, 0, 1, -0.2 * im.size[1]), bic)),
]


@pytest.mark.parametrize("name,arg,pillow", POINT_CASES)
def test_point_ops_equal_pillow(name, arg, pillow):
    image = random_image()
    args = () if arg is None else (f64(arg),)
    assert torch.equal(NAME_TO_OP[name](as_levels(image), *args), as_levels(pillow(image)))


@pytest.mark.parametrize("bicubic", [False, True])
@pytest.mark.parametrize("name,arg,pillow", GEOMETRIC_CASES)
def test_geometric_ops_equal_pillow(name, arg, pillow, bicubic):
    image = random_image(seed=1)
    fill = torch.tensor(FILL, dtype=torch.float32)
    ours = NAME_TO_OP[name](as_levels(image), f64(arg), fill, torch.tensor([bicubic]))
    assert torch.equal(ours, as_levels(pillow(image, bicubic)))


def test_levels_follow_timm_increasing_mapping():
    torch.manual_seed(0)
    m = torch.full((200,), 9.0, dtype=torch.float64)
    assert LEVEL_TO_ARG["PosterizeIncreasing"](m).unique().tolist() == [1]  # 4 - int(3.6)
    assert LEVEL_TO_ARG["SolarizeIncreasing"](m).unique().tolist() == [26]  # 256 - int(230.4)
    assert LEVEL_TO_ARG["SolarizeAdd"](m).unique().tolist() == [99]
    spans = [("Rotate", 27.0), ("ShearX", 0.27), ("TranslateYRel", 0.405), ("ColorIncreasing", 0.81)]
    for name, span in spans:
        values = LEVEL_TO_ARG[name](m) - (1.0 if name == "ColorIncreasing" else 0.0)
        assert torch.allclose(values.abs(), torch.full_like(values, span))
        assert 60 < (values > 0).sum() < 140  # the sign is drawn per image
    strongest = LEVEL_TO_ARG["ContrastIncreasing"](torch.full((40,), 10.0, dtype=torch.float64))
    assert strongest.min() == pytest.approx(0.1)  # 1 - 0.9, kept >= 0.1


def test_config_string_is_timms():
    c = parse_rand_augment("rand-m9-mstd0.5-inc1")
    assert (c.magnitude, c.num_layers, c.magnitude_std, c.increasing, c.prob) == (9, 2, 0.5, True, 0.5)
    assert parse_rand_augment("rand-m7-n3-mstd101-inc1").magnitude_std == math.inf
    with pytest.raises(ValueError, match="unknown RandAugment section 'x1'"):
        parse_rand_augment("rand-m9-x1")
    with pytest.raises(ValueError, match="increasing-severity"):
        RandAugment(parse_rand_augment("rand-m9"), FILL)


def test_rand_augment_draws_per_image():
    torch.manual_seed(0)
    b = 3000
    images = torch.randint(0, 256, (b, 3, 6, 6)).float()
    ra = RandAugment(parse_rand_augment("rand-m9-mstd0.5-inc1"), FILL)
    out = ra(images.clone())
    (op1, applied1, m1), (op2, applied2, m2) = ra.last_draws
    for op, applied in ((op1, applied1), (op2, applied2)):
        assert 0.47 < applied.float().mean() < 0.53  # p = 0.5 per op
        counts = torch.bincount(op, minlength=15).double()
        chi2 = (((counts - b / 15) ** 2) / (b / 15)).sum()
        assert chi2 < 40  # uniform over the 15 inc1 ops (14 dof: P(chi2 > 40) < 3e-4)
        assert 0.047 < (op[1:] == op[:-1]).double().mean() < 0.087  # each image draws its own op
    assert 0.047 < (op1 == op2).double().mean() < 0.087  # layers independent, with replacement
    assert 0.22 < (applied1 & applied2).double().mean() < 0.28
    magnitudes = torch.cat([m1, m2])
    assert abs(magnitudes.mean() - 9.0) < 0.03 and abs(magnitudes.std() - 0.5) < 0.03
    assert magnitudes.max() <= 10.0
    untouched = ~(applied1 | applied2)
    assert torch.equal(out[untouched], images[untouched])
    changed = (out != images).flatten(1).any(1)
    assert changed[~untouched].double().mean() > 0.9


def test_rand_augment_groups_give_each_image_its_own_op():
    torch.manual_seed(1)
    images = torch.randint(0, 256, (64, 3, 8, 8)).float()
    ra = RandAugment(RandAugmentConfig(magnitude=9, num_layers=1, increasing=True, prob=1.0), FILL)
    out = ra(images.clone())
    ((op, _, m),) = ra.last_draws
    invert = op == ra.names.index("Invert")
    assert invert.any() and torch.equal(out[invert], 255 - images[invert])
    poster = op == ra.names.index("PosterizeIncreasing")
    bits = LEVEL_TO_ARG["PosterizeIncreasing"](m[poster])
    for img, before, keep in zip(out[poster], images[poster], bits.tolist()):
        assert torch.equal(img, NAME_TO_OP["PosterizeIncreasing"](before[None], torch.tensor([keep]))[0])


def test_erasing_fills_with_standard_normal_noise():
    torch.manual_seed(0)
    x = torch.zeros(300, 3, 32, 32)
    RandomErasing(1.0, "pixel")(x)
    noise = x[x != 0]
    assert abs(noise.mean()) < 0.02 and abs(noise.std() - 1) < 0.02
    area = (x[:, 0] != 0).flatten(1).sum(1).double() / (32 * 32)
    assert (area > 0).double().mean() > 0.97 and area.max() <= 0.36 and area[area > 0].min() >= 0.01
    rand = RandomErasing(1.0, "rand")(torch.zeros(50, 3, 16, 16))
    per_channel = [img[ch][img[ch] != 0] for img in rand for ch in range(3)]
    assert all(v.numel() == 0 or v.unique().numel() == 1 for v in per_channel)
    erased = torch.tensor([RandomErasing(0.25).box(32, 32) is not None for _ in range(2000)])
    assert 0.22 < erased.double().mean() < 0.28


def test_erasing_comes_after_mixing():
    torch.manual_seed(0)
    recipe = ImageRecipe(
        image_size=16, auto_augment=None, hflip=0.0, color_jitter=0.0, erase_prob=1.0, cutmix_alpha=0.0,
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
    )  # fmt: skip
    aug = ImageTrainAugment(10, recipe)
    levels = torch.arange(64).repeat_interleave(1) * 4  # one constant grey level per image
    images = levels.view(64, 1, 1, 1).expand(64, 3, 16, 16).to(torch.uint8)
    x, _ = aug(images, torch.arange(64) % 10)
    base = x.flatten(2).median(dim=2).values[..., None, None]  # the mixed constant (boxes < 1/3 area)
    noise = x[(x - base).abs() > 1e-5]  # erased pixels hold the fill itself
    # Mixed after erasing, the noise would be scaled by the mixing weight (std well below 1).
    assert noise.numel() > 1000 and abs(noise.std() - 1) < 0.05 and abs(noise.mean()) < 0.05


def test_random_resized_crop_covers_the_whole_image():
    torch.manual_seed(0)
    crop = RandomResizedCrop(224)
    boxes = [crop.params(400, 300) for _ in range(2000)]  # a 4:3 image
    lefts = [left for _, left, _, _ in boxes]
    rights = [left + w for _, left, _, w in boxes]
    assert min(lefts) == 0 and max(rights) == 400  # the outer quarter is reachable
    assert all(0 <= top and top + h <= 300 and 0 <= left and left + w <= 400 for top, left, h, w in boxes)
    areas = np.array([h * w / (400 * 300) for _, _, h, w in boxes])
    assert areas.min() < 0.1 and areas.max() > 0.9
    assert crop.params(1000, 10) == (0, 493, 10, 13)  # no try fits: central crop of ratio 4/3
    image = random_image(40, 60)
    torch.manual_seed(5)
    out = RandomResizedCrop(16, interpolation="bicubic")(image)
    torch.manual_seed(5)
    top, left, h, w = RandomResizedCrop(16).params(60, 40)
    expected = image.crop((left, top, left + w, top + h)).resize((16, 16), Image.Resampling.BICUBIC)
    assert out.dtype == torch.uint8 and torch.equal(out, pil_to_tensor(expected))
    tensor_out = RandomResizedCrop(16)(pil_to_tensor(image))
    assert tensor_out.shape == (3, 16, 16) and tensor_out.dtype == torch.uint8


def test_evaluation_resizes_to_248_then_centre_crops(tmp_path):
    assert eval_resize(224, 0.9) == 248 and eval_resize(224, 0.875) == 256
    (tmp_path / "a").mkdir()
    image = random_image(300, 400)
    image.save(tmp_path / "a" / "x.png")
    got, _ = ImageFolder(tmp_path, image_size=224, train=False, crop_ratio=0.9)[0]
    # torchvision Resize(248): long side int(248 * 400 / 300) = 330; CenterCrop offsets round(106 / 2), 12
    expected = image.resize((330, 248), Image.Resampling.BICUBIC).crop((53, 12, 277, 236))
    assert torch.equal(got, pil_to_tensor(expected))
    train, _ = ImageFolder(tmp_path, image_size=224, train=True)[0]
    assert train.shape == (3, 224, 224)
    with pytest.raises(ValueError, match="training crop is 100 pixels but image_size is 224"):
        ImageFolder(tmp_path, image_size=224, crop=RandomResizedCrop(100))


def test_recipe_keys_are_checked_and_batches_must_be_cropped():
    with pytest.raises(ValueError, match="randaugment_m no longer exists; use auto_augment"):
        image_recipe({"randaugment_m": 27})
    with pytest.raises(ValueError, match="data.image_recipe: unknown key 'hflp'"):
        image_recipe({"hflp": 0.5})
    with pytest.raises(ValueError, match="unknown RandAugment section"):
        image_recipe({"auto_augment": "rand-q9"})
    assert image_recipe({"image_size": 32}).train_crop() == RandomResizedCrop(32)
    aug = ImageTrainAugment(10, ImageRecipe(image_size=32))
    with pytest.raises(ValueError, match=r"arrive as \[40, 40\] but image_recipe.image_size is 32"):
        aug(torch.zeros(2, 3, 40, 40, dtype=torch.uint8), torch.arange(2))


def test_engine_trains_with_the_whole_recipe(tmp_path):
    from test_engine_helpers import tiny_image_config

    from pointcoc.engine.data import make_dataset
    from pointcoc.engine.trainer import train

    config = tiny_image_config("data.augment=true", "data.image_recipe={image_size: 8, scale: [0.5, 1.0]}")
    dataset = make_dataset(config.data, "data.train_split", augment=True)
    assert dataset.crop == RandomResizedCrop(8, (0.5, 1.0))  # cut per image in the loader
    assert make_dataset(config.data, "data.val_split", augment=False).crop is None
    result = train(config, tmp_path / "run")
    assert len(result["history"]) == 1 and math.isfinite(result["history"][0]["loss"])
