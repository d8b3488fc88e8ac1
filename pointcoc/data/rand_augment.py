"""timm's RandAugment (``rand-m9-mstd0.5-inc1``, the official CoC ImageNet recipe) on batched tensors.

timm (``timm/data/auto_augment.py``) runs it per image on Pillow images: ``num_layers`` ops drawn
uniformly with replacement from the op list, each applied with probability 0.5 and, when applied, with
its own magnitude ~ N(m, mstd) clipped to [0, 10] and its own random sign. Here the same draws are made
for every image of a batch at once, then the batch is grouped by the drawn op so that each group is
transformed in one call with its per-image magnitudes (kornia's RandAugment instead applies one draw to
the whole batch). Images are float tensors holding uint8 levels (0..255) and are re-quantised after
every op, as Pillow's uint8 images are; each op reproduces its Pillow counterpart, roundings included
(tests compare them with Pillow).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

LEVEL_DENOM = 10.0  # timm's _LEVEL_DENOM: magnitudes are on a 0..10 scale
Bicubic = Tensor | None  # per image: Pillow's bicubic (True) or bilinear filter; None draws it


@dataclass(frozen=True)
class RandAugmentConfig:
    """The fields of a timm ``rand-...`` string (``m``, ``n``, ``mstd``, ``mmax``, ``inc``)."""

    magnitude: float = LEVEL_DENOM
    num_layers: int = 2
    magnitude_std: float = 0.0
    magnitude_max: float = LEVEL_DENOM
    increasing: bool = False
    prob: float = 0.5


def parse_rand_augment(config: str) -> RandAugmentConfig:
    """timm's ``rand_augment_transform`` grammar: ``rand-m9-mstd0.5-inc1`` -> magnitude 9, std 0.5, the
    increasing-severity op list; ``n`` sets the ops per image (default 2). ``mstd`` > 100 means uniform."""
    sections = config.split("-")
    if sections[0] != "rand":
        raise ValueError(f"RandAugment config must start with 'rand-' (timm's format), got {config!r}")
    fields: dict[str, float | int | bool] = {}
    for section in sections[1:]:
        parts = re.split(r"(\d.*)", section)
        if len(parts) < 2:
            continue
        key, value = parts[:2]
        if key == "m":
            fields["magnitude"] = int(value)
        elif key == "n":
            fields["num_layers"] = int(value)
        elif key == "mstd":
            fields["magnitude_std"] = math.inf if float(value) > 100 else float(value)
        elif key == "mmax":
            fields["magnitude_max"] = int(value)
        elif key == "inc":
            fields["increasing"] = bool(int(value))
        else:
            raise ValueError(
                f"unknown RandAugment section {section!r} in {config!r} (known: m, n, mstd, mmax, inc)"
            )
    return RandAugmentConfig(**fields)  # type: ignore[arg-type]


def _quantise(x: torch.Tensor) -> torch.Tensor:
    return x.round_().clamp_(0, 255)


def _blend(degenerate: torch.Tensor, image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Pillow's ``Image.blend(degenerate, image, factor)`` on uint8 levels: clipped, then truncated."""
    f = factor.to(image.device, image.dtype).view(-1, 1, 1, 1)
    return (degenerate + f * (image - degenerate)).clamp_(0, 255).floor_()


def _grey(x: torch.Tensor) -> torch.Tensor:
    """Pillow's ``convert("L")``: (R 19595 + G 38470 + B 7471 + 2^15) >> 16, as ``[G, 1, H, W]``."""
    r, g, b = x[:, 0:1].long(), x[:, 1:2].long(), x[:, 2:3].long()
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(x.dtype)


def _per_channel_lut(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Apply ``lut [G, C, 256]`` to the levels of ``x [G, C, H, W]``."""
    g, c, h, w = x.shape
    return lut.gather(2, x.long().reshape(g, c, h * w)).view(g, c, h, w).to(x.dtype)


def _histograms(x: torch.Tensor) -> torch.Tensor:
    """Level counts ``[G, C, 256]`` per image and channel."""
    g, c = x.shape[:2]
    offsets = torch.arange(g * c, device=x.device).view(g, c, 1) * 256
    flat = (x.long().reshape(g, c, -1) + offsets).reshape(-1)
    return torch.bincount(flat, minlength=g * c * 256).view(g, c, 256)


# Pillow-equivalent ops on float uint8 levels [G, C, H, W], with per-image arguments [G] (timm's NAME_TO_OP).


def auto_contrast(x: torch.Tensor) -> torch.Tensor:
    """``ImageOps.autocontrast``: each channel's [min, max] stretched to [0, 255] (unchanged if flat)."""
    levels = torch.arange(256, device=x.device, dtype=torch.float64)
    lo = x.amin(dim=(2, 3)).double()[..., None]
    hi = x.amax(dim=(2, 3)).double()[..., None]
    scale = 255.0 / (hi - lo).clamp_min(1.0)
    lut = (levels * scale - lo * scale).floor().clamp(0, 255)  # int(ix * scale + offset), clipped
    lut = torch.where(hi > lo, lut, levels.expand_as(lut))
    return _per_channel_lut(x, lut.long())


def equalize(x: torch.Tensor) -> torch.Tensor:
    """``ImageOps.equalize``: per channel, ``lut[i] = (step // 2 + sum(h[:i])) // step`` with
    ``step = (sum(h) - h[last level present]) // 255``; unchanged where ``step`` is 0."""
    hist = _histograms(x)
    last = 255 - torch.flip(hist > 0, dims=[2]).long().argmax(dim=2, keepdim=True)
    step = (hist.sum(2, keepdim=True) - hist.gather(2, last)) // 255
    before = torch.cumsum(hist, 2) - hist
    lut = ((step // 2 + before) // step.clamp_min(1)).clamp(max=255)
    lut = torch.where(step > 0, lut, torch.arange(256, device=x.device).expand_as(lut))
    return _per_channel_lut(x, lut)


def invert(x: torch.Tensor) -> torch.Tensor:
    return 255 - x


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """``ImageOps.posterize``: keep the ``bits`` high bits of every level."""
    mask = (~((1 << (8 - bits.long())) - 1)) & 255
    return (x.long() & mask.to(x.device).view(-1, 1, 1, 1)).to(x.dtype)


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``ImageOps.solarize``: invert the levels at or above ``threshold``."""
    return torch.where(x >= threshold.to(x.device, x.dtype).view(-1, 1, 1, 1), 255 - x, x)


def solarize_add(x: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """timm's ``solarize_add``: add ``add`` to the levels below 128, clipped at 255."""
    return torch.where(x < 128, (x + add.to(x.device, x.dtype).view(-1, 1, 1, 1)).clamp_(max=255), x)


def color(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Color``: blend with the grey image."""
    return _blend(_grey(x).expand_as(x), x, factor)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Contrast``: blend with the grey image's mean level, ``int(mean + 0.5)``."""
    mean = (_grey(x).mean(dim=(1, 2, 3), keepdim=True) + 0.5).floor()
    return _blend(mean.expand_as(x), x, factor)


def brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Brightness``: blend with black."""
    return _blend(torch.zeros_like(x), x, factor)


def sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Sharpness``: blend with ``ImageFilter.SMOOTH`` (3x3, 5 in the centre, / 13,
    rounded; the border rows and columns kept)."""
    kernel = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    kernel[1, 1] = 5.0
    c = x.shape[1]
    smooth = F.conv2d(x, (kernel / 13).expand(c, 1, 3, 3), groups=c)
    degenerate = x.clone()
    degenerate[:, :, 1:-1, 1:-1] = _quantise(smooth)
    return _blend(degenerate, x, factor)


def _cubic(v1: Tensor, v2: Tensor, v3: Tensor, v4: Tensor, d: Tensor) -> Tensor:
    """Pillow's ``BICUBIC`` macro of its geometric transforms (cubic convolution with a = -1)."""
    p2, p3, p4 = v3 - v1, 2 * (v1 - v2) + v3 - v4, -v1 + v2 - v3 + v4
    return v2 + d * (p2 + d * (p3 + d * p4))


def pil_affine(x: Tensor, matrix: Tensor, fill: Tensor, bicubic: Bicubic = None) -> Tensor:
    """Pillow's ``Image.transform(size, AFFINE, (a, b, c, d, e, f), resample, fillcolor=fill)``, per image.

    Output pixel centre ``(x + 0.5, y + 0.5)`` reads the input at ``(a x' + b y' + c, d x' + e y' + f)``;
    outside ``[0, W) x [0, H)`` it takes ``fill``; inside, Pillow's bilinear or bicubic filter (a = -1)
    with clamped borders, in float64, truncated to a level. ``bicubic [G]`` picks the filter per image;
    by default each image draws one, as timm does (``_RANDOM_INTERPOLATION``).
    """
    g, c, h, w = x.shape
    dev = x.device
    ys, xs = torch.meshgrid(
        torch.arange(h, device=dev, dtype=torch.float64) + 0.5,
        torch.arange(w, device=dev, dtype=torch.float64) + 0.5,
        indexing="ij",
    )
    a, b, t0, d, e, t1 = (matrix[:, i].to(dev, torch.float64).view(g, 1, 1) for i in range(6))
    src_x, src_y = a * xs + b * ys + t0, d * xs + e * ys + t1
    outside = (src_x < 0) | (src_x >= w) | (src_y < 0) | (src_y >= h)
    fx, fy = (src_x - 0.5).floor(), (src_y - 0.5).floor()
    dx, dy = (src_x - 0.5 - fx)[:, None], (src_y - 0.5 - fy)[:, None]
    flat = x.double().reshape(g, c, h * w)
    bicubic = (torch.rand(g) < 0.5 if bicubic is None else bicubic).to(dev).view(g, 1, 1, 1)
    taps = torch.arange(-1, 3, device=dev)  # bicubic reads rows/columns floor-1 .. floor+2

    def read(row: Tensor, col: Tensor) -> Tensor:
        index = (row.long().clamp(0, h - 1) * w + col.long().clamp(0, w - 1)).view(g, 1, h * w)
        return flat.gather(2, index.expand(g, c, h * w)).view(g, c, h, w)

    grid = [[read(fy + i, fx + j) for j in taps.tolist()] for i in taps.tolist()]
    rows_lin = [grid[i][1] + dx * (grid[i][2] - grid[i][1]) for i in (1, 2)]
    linear = rows_lin[0] + dy * (rows_lin[1] - rows_lin[0])
    rows_cub = [_cubic(*grid[i], dx) for i in range(4)]
    cubic = _cubic(*rows_cub, dy)
    out = torch.where(bicubic, cubic, linear).clamp(0, 255).floor()
    out = torch.where(outside[:, None], fill.view(1, -1, 1, 1).to(dev, torch.float64), out)
    return out.to(x.dtype)


def _rows(*rows: Tensor | float, like: Tensor) -> Tensor:
    return torch.stack([torch.as_tensor(r, dtype=torch.float64).expand_as(like) for r in rows], dim=1)


def rotate(x: Tensor, degrees: Tensor, fill: Tensor, bicubic: Bicubic = None) -> Tensor:
    """Pillow's ``rotate(degrees)`` about the image centre (counter-clockwise), same size; its matrix
    built as Pillow does, in Python floats rounded to 15 decimals."""
    cx, cy = x.shape[-1] / 2.0, x.shape[-2] / 2.0
    rows = []
    for deg in degrees.tolist():
        angle = -math.radians(deg % 360.0)
        m = [round(math.cos(angle), 15), round(math.sin(angle), 15), 0.0]
        m += [round(-math.sin(angle), 15), round(math.cos(angle), 15), 0.0]
        m[2], m[5] = m[0] * -cx + m[1] * -cy + cx, m[3] * -cx + m[4] * -cy + cy
        rows.append(m)
    return pil_affine(x, torch.tensor(rows, dtype=torch.float64).view(-1, 6), fill, bicubic)


def shear_x(x: Tensor, factor: Tensor, fill: Tensor, bicubic: Bicubic = None) -> Tensor:
    f = factor.double().cpu()
    return pil_affine(x, _rows(1.0, f, 0.0, 0.0, 1.0, 0.0, like=f), fill, bicubic)


def shear_y(x: Tensor, factor: Tensor, fill: Tensor, bicubic: Bicubic = None) -> Tensor:
    f = factor.double().cpu()
    return pil_affine(x, _rows(1.0, 0.0, 0.0, f, 1.0, 0.0, like=f), fill, bicubic)


def translate_x_rel(x: Tensor, pct: Tensor, fill: Tensor, bicubic: Bicubic = None) -> Tensor:
    pixels = pct.double().cpu() * x.shape[-1]
    return pil_affine(x, _rows(1.0, 0.0, pixels, 0.0, 1.0, 0.0, like=pixels), fill, bicubic)


def translate_y_rel(x: Tensor, pct: Tensor, fill: Tensor, bicubic: Bicubic = None) -> Tensor:
    pixels = pct.double().cpu() * x.shape[-2]
    return pil_affine(x, _rows(1.0, 0.0, 0.0, 0.0, 1.0, pixels, like=pixels), fill, bicubic)


# timm's LEVEL_TO_ARG for the increasing list: magnitudes [G] (float64, 0..10) -> per-image arguments.


def _signed(m: torch.Tensor, span: float) -> torch.Tensor:
    """``_randomly_negate(m / 10 * span)``: the sign drawn per image."""
    return m / LEVEL_DENOM * span * torch.where(torch.rand(m.shape) > 0.5, -1.0, 1.0).to(m.dtype)


def _enhance_increasing(m: torch.Tensor) -> torch.Tensor:
    return (1.0 + _signed(m, 0.9)).clamp_min(0.1)


LEVEL_TO_ARG: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "AutoContrast": None,
    "Equalize": None,
    "Invert": None,
    "Rotate": lambda m: _signed(m, 30.0),
    "PosterizeIncreasing": lambda m: 4 - (m / LEVEL_DENOM * 4).long(),
    "SolarizeIncreasing": lambda m: 256 - (m / LEVEL_DENOM * 256).long(),
    "SolarizeAdd": lambda m: (m / LEVEL_DENOM * 110).long(),
    "ColorIncreasing": _enhance_increasing,
    "ContrastIncreasing": _enhance_increasing,
    "BrightnessIncreasing": _enhance_increasing,
    "SharpnessIncreasing": _enhance_increasing,
    "ShearX": lambda m: _signed(m, 0.3),
    "ShearY": lambda m: _signed(m, 0.3),
    "TranslateXRel": lambda m: _signed(m, 0.45),
    "TranslateYRel": lambda m: _signed(m, 0.45),
}
# timm's _RAND_INCREASING_TRANSFORMS, in its order (the non-increasing list is not implemented here).
NAME_TO_OP: dict[str, Callable[..., torch.Tensor]] = {
    "AutoContrast": auto_contrast,
    "Equalize": equalize,
    "Invert": invert,
    "Rotate": rotate,
    "PosterizeIncreasing": posterize,
    "SolarizeIncreasing": solarize,
    "SolarizeAdd": solarize_add,
    "ColorIncreasing": color,
    "ContrastIncreasing": contrast,
    "BrightnessIncreasing": brightness,
    "SharpnessIncreasing": sharpness,
    "ShearX": shear_x,
    "ShearY": shear_y,
    "TranslateXRel": translate_x_rel,
    "TranslateYRel": translate_y_rel,
}
GEOMETRIC = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}


class RandAugment:
    """Per-image RandAugment with timm's semantics on float ``[B, 3, H, W]`` batches of uint8 levels.

    ``fill``: the affine ops' fill colour in levels (timm: ``round(255 * mean)``). After a call,
    ``last_draws`` holds the layer-by-layer draws ``(op [B], applied [B], magnitude [B])`` (tests).
    """

    def __init__(self, config: RandAugmentConfig, fill: tuple[int, ...]) -> None:
        if not config.increasing:
            raise ValueError(
                "only timm's increasing-severity op list is implemented (the official recipe's inc1); "
                "add -inc1 to the RandAugment string"
            )
        self.config, self.fill = config, fill
        self.names = list(NAME_TO_OP)
        self.last_draws: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def magnitudes(self, n: int) -> torch.Tensor:
        c = self.config
        if c.magnitude_std == math.inf:
            m = torch.rand(n, dtype=torch.float64) * c.magnitude
        elif c.magnitude_std > 0:
            m = torch.randn(n, dtype=torch.float64) * c.magnitude_std + c.magnitude
        else:
            m = torch.full((n,), float(c.magnitude), dtype=torch.float64)
        return m.clamp(0.0, c.magnitude_max)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        fill = torch.tensor(self.fill, dtype=x.dtype, device=x.device)
        self.last_draws = []
        for _ in range(self.config.num_layers):
            op = torch.randint(len(self.names), (b,))
            applied = torch.rand(b) <= self.config.prob  # timm skips when random() > prob
            magnitude = self.magnitudes(b)
            self.last_draws.append((op, applied, magnitude))
            for i in op[applied].unique().tolist():
                chosen = (applied & (op == i)).nonzero().view(-1)
                name, idx = self.names[i], chosen.to(x.device)
                level = LEVEL_TO_ARG[name]
                args = () if level is None else (level(magnitude[chosen]),)
                if name in GEOMETRIC:
                    args += (fill,)
                x[idx] = NAME_TO_OP[name](x[idx], *args)
        return x
