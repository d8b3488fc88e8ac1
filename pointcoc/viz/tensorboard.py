"""Cluster pictures of a fixed set of validation samples in TensorBoard, to watch clusters form in training.

Each sample gets one picture per logged epoch (tag ``clusters/sample_I``): every stage side by side, the
last block of each, head 0. Images show the assignment blended over the image with region borders, point
clouds one view per stage coloured by the center each point joined.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..engine import Callback, RunContext, TrainState
from .image_clusters import display_side, image_clusters, render_image_clusters
from .point_png import VIEWS, render_layers
from .visualize import capture, point_layers

GAP = 4  # white pixels between the stage pictures of an image sample


class ClusterPictures(Callback):
    """Training callback: pictures of the first ``count`` validation samples, due on epoch 1, every
    ``every`` epochs and on the last. Logs nothing for models without clusters (:func:`has_clusters`)."""

    def __init__(self, count: int, every: int) -> None:
        self.count, self.every = count, every
        self.samples: list[torch.Tensor] = []

    def on_train_start(self, run: RunContext, state: TrainState) -> None:
        self.writer, self.to_input, self.epochs = run.writer, run.prep.eval, run.config.train.epochs
        if state.eval_model.model_cfg.has_clusters:
            # indexed once: the validation items are deterministic, so the same samples are shown every time
            val = run.data.val
            self.samples = [val[i][0] for i in range(min(self.count, len(val)))]  # type: ignore[arg-type]

    def due(self, epoch: int) -> bool:
        last = epoch == self.epochs
        return self.every > 0 and bool(self.samples) and (epoch == 1 or epoch % self.every == 0 or last)

    def on_epoch_end(self, epoch: int, state: TrainState, metrics: dict[str, Any]) -> None:
        if self.due(epoch):
            self.log(self.writer, state.eval_model, epoch)

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
