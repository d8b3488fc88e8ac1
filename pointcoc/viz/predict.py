"""Top-5 predictions of a model for image and point-cloud files: what ``main.py predict`` prints.

Images go through the official evaluation transform (shorter side to ``floor(size / crop_pct)``, bicubic,
centre crop, the model's mean/std); point clouds are read as for the cluster pictures (first points of an .h5
sample or .txt file, or sampled on a mesh; centred and scaled into the unit sphere).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.image_augment import ImageEvalTransform
from ..data.images import eval_resize, resize_center_crop
from .inputs import read_image, read_points, split_index
from .loading import TOP_K, VizModel, top_predictions
from .visualize import input_for


def eval_image_input(viz: VizModel, path: Path) -> torch.Tensor:
    """``[1, 3, S, S]``: the image at ``path`` through the official evaluation transform."""
    side = viz.cfg.image_size
    pixels = resize_center_crop(read_image(path), eval_resize(side, viz.cfg.crop_pct), side)
    return ImageEvalTransform(viz.cfg.mean, viz.cfg.std)(pixels[None])


def predict_file(viz: VizModel, source: str | Path, k: int = TOP_K) -> list[tuple[str, float]]:
    """The ``k`` most probable classes ``[(name, probability)]`` for one file (``FILE.h5:INDEX`` for an .h5
    sample); class numbers stand in for names when ``viz`` has none."""
    path, index = split_index(source)
    if input_for(viz, path, index) == "image":
        x = eval_image_input(viz, path)
    else:
        x = read_points(path, viz.cfg.num_points, index, viz.canonical)[None]
    with torch.no_grad():
        logits = viz.model(x)[0]
    return top_predictions(logits, viz.classes or [f"class {i}" for i in range(logits.numel())], k)
