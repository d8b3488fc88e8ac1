"""Cluster pictures of a fixed set of validation samples in TensorBoard, to watch clusters form in training.

Each sample gets one picture per logged epoch (tag ``clusters/sample_I``): every stage side by side, the
last block of each, head 0. Images show the assignment blended over the image with region borders, point
clouds one view per stage coloured by the center each point joined.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from .image_clusters import display_side, image_clusters, render_image_clusters
from .point_png import VIEWS, render_layers
from .visualize import capture, point_layers

GAP = 4  # white pixels between the stage pictures of an image sample


def has_clusters(model: nn.Module) -> bool:
    """Whether ``model`` declares clusters to draw (``model_cfg.has_clusters``)."""
    return model.model_cfg.has_clusters


class ClusterPictures:
    """Pictures of the first ``count`` samples of ``dataset``, due on epoch 1, every ``every`` epochs and
    on the last; ``to_input`` turns a batch of one dataset item into the model's input on its device.
    Only for models that :func:`has_clusters`."""

    def __init__(
        self, dataset: Dataset, count: int, every: int, to_input: Callable[[torch.Tensor], torch.Tensor]
    ) -> None:
        # indexed once: the validation items are deterministic, so the same samples are shown every time
        self.samples = [dataset[i][0] for i in range(min(count, len(dataset)))]  # type: ignore[arg-type]
        self.every, self.to_input = every, to_input

    def due(self, epoch: int, last: bool) -> bool:
        return self.every > 0 and bool(self.samples) and (epoch == 1 or epoch % self.every == 0 or last)

    def log(self, writer: Any, model: nn.Module, epoch: int) -> None:
        was_training = model.training
        model.eval()
        for i, sample in enumerate(self.samples):
            x = self.to_input(sample[None])
            if model.model_cfg.is_points:
                picture = point_strip(model, x, f"epoch {epoch}, validation sample {i}")
            else:
                picture = image_strip(model, x, sample)
            writer.add_image(f"clusters/sample_{i}", picture, epoch, dataformats="HWC")
        model.train(was_training)


def image_strip(model: nn.Module, x: torch.Tensor, image: torch.Tensor) -> np.ndarray:
    """Every stage's clusters over ``image`` (uint8 ``[C, H, W]``), side by side."""
    _, stages = capture(model, x)
    side = display_side(image.shape[-1])
    scale = (side // image.shape[-2], side // image.shape[-1])
    display = image.expand(3, -1, -1).permute(1, 2, 0).cpu().numpy()
    display = display.repeat(scale[0], axis=0).repeat(scale[1], axis=1)  # nearest: small images stay crisp
    pictures = []
    for stage in stages.values():
        pictures.append(render_image_clusters(display, image_clusters(stage, len(stage.blocks) - 1, 0), 0.5))
        pictures.append(np.full((display.shape[0], GAP, 3), 255, np.uint8))
    return np.concatenate(pictures[:-1], axis=1)


def point_strip(model: nn.Module, x: torch.Tensor, title: str) -> np.ndarray:
    """One view per stage of the cloud ``x`` ``[1, N, 3]``, coloured by the center each point joined in the
    stage's last cluster block (stages without: by kNN group)."""
    _, stages = capture(model, x)
    keys, layers = point_layers(stages, x[0].cpu().numpy(), 0)
    last = {s: layer for (s, _), layer in zip(keys, layers)}  # later blocks overwrite earlier ones
    return render_layers([(layer, VIEWS[0]) for layer in last.values()], title)
