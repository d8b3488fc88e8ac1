"""Image pictures: each point's center (hard assignment) as a colour blended over the image, region borders.

The assignment comes from the model's ``capture_clusters()`` (the forward pass's own clustering, see
:mod:`pointcoc.models.capture`). Centers are numbered inside each region, so colour ``i`` means "center ``i``
of its region" and the borders show which region a point was clustered in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cluster import padded_to_folds
from ..models.capture import StageClusters
from .colors import BORDER, cluster_colors

DISPLAY_SIDE = 448  # pictures are drawn at about this size, whatever the model's input size


@dataclass
class ImageClusters:
    """One block's assignment for one image and head, with the geometry needed to draw it."""

    assignment: np.ndarray  # [h, w] center index inside the point's region, row-major over the proposals
    folds: tuple[int, int]  # regions along (h, w); (1, 1) when the block clusters the whole map
    padded: tuple[int, int]  # size the map was clustered at (rounded up to multiples of the folds)
    centers: int  # centers per region


def image_clusters(stage: StageClusters, block: int, head: int) -> ImageClusters:
    """The picture data of ``block`` and ``head`` of a captured image stage, for the batch's first image."""
    assignment = stage.blocks[block].assignment[0, head].cpu().numpy()
    padded = padded_to_folds(assignment.shape, stage.regions)
    return ImageClusters(assignment, stage.regions, padded, stage.centers)


def display_side(image_size: int) -> int:
    """Side of the drawn picture: the model's input side times a whole factor, near DISPLAY_SIDE."""
    return image_size * max(1, round(DISPLAY_SIDE / image_size))


def border_width(side: int) -> int:
    return max(1, round(side / 224))


def region_borders(clusters: ImageClusters, height: int, width: int) -> tuple[list[int], list[int]]:
    """Pixel rows and columns where a region boundary starts, on a ``height x width`` picture."""
    h, w = clusters.assignment.shape
    fh, fw = clusters.folds
    ph, pw = clusters.padded
    # boundary k lies before map cell k * region_side; pixel y shows cell y * h // height
    rows = [-(-k * (ph // fh) * height // h) for k in range(1, fh) if k * (ph // fh) < h]
    cols = [-(-k * (pw // fw) * width // w) for k in range(1, fw) if k * (pw // fw) < w]
    return rows, cols


def render_image_clusters(image: np.ndarray, clusters: ImageClusters, alpha: float) -> np.ndarray:
    """``image`` ``[H, W, 3]`` uint8 with each pixel's cluster colour blended in at ``alpha`` (0: image
    only, 1: colours only) and the region borders drawn over it."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    height, width = image.shape[:2]
    h, w = clusters.assignment.shape
    cells = clusters.assignment[np.arange(height) * h // height][:, np.arange(width) * w // width]
    colors = cluster_colors(clusters.centers)[cells].astype(np.float32)
    out = ((1.0 - alpha) * image.astype(np.float32) + alpha * colors).round().astype(np.uint8)
    rows, cols = region_borders(clusters, height, width)
    line = border_width(min(height, width))
    for y in rows:
        out[max(0, y - line // 2) : y - line // 2 + line] = BORDER
    for x in cols:
        out[:, max(0, x - line // 2) : x - line // 2 + line] = BORDER
    return out


def prediction_panel(picture: np.ndarray, predictions: list[tuple[str, float]]) -> np.ndarray:
    """``picture`` with the top predictions written in a white panel on its right."""
    from PIL import Image, ImageDraw, ImageFont

    size = max(12, picture.shape[0] // 28)
    font = ImageFont.load_default(size=size)
    lines = ["top-5 predictions"] + [f"{p:6.1%}  {name}" for name, p in predictions]
    width = max(int(font.getlength(line)) for line in lines) + 2 * size
    panel = Image.new("RGB", (width, picture.shape[0]), "white")
    draw = ImageDraw.Draw(panel)
    for i, line in enumerate(lines):
        draw.text((size, size + i * int(1.6 * size)), line, fill="black", font=font)
    return np.concatenate([picture, np.asarray(panel)], axis=1)
