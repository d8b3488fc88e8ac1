"""Cluster pictures of a fixed set of validation samples in TensorBoard, to watch clusters form in training.

Each sample gets one picture per logged epoch (tag ``clusters/sample_I``): every stage side by side, the
last block of each, head 0. Images show the assignment blended over the image with region borders, point
clouds one view per stage coloured by kNN group.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..engine import Callback, RunContext, TrainState
from ..models import ContextCluster, PointMLP, PointSetCoC
from .image_clusters import block_counts, display_side, image_clusters, render_image_clusters
from .loading import POINT_CLUSTER_MODELS
from .point_clusters import survival
from .point_png import VIEWS, render_layers
from .visualize import capture_points, cluster_blocks, set_layers, stage_layer

GAP = 4  # white pixels between the stage pictures of an image sample


def has_clusters(model: nn.Module) -> bool:
    """Whether ``model`` exposes cluster assignments to draw (CoC image models, PointMLP-family models and
    point-set CoCs)."""
    return isinstance(model, (ContextCluster, *POINT_CLUSTER_MODELS))


class ClusterPictures(Callback):
    """Training callback: pictures of the first ``count`` validation samples, due on epoch 1, every
    ``every`` epochs and on the last. Logs nothing for models without clusters (:func:`has_clusters`)."""

    def __init__(self, count: int, every: int) -> None:
        self.count, self.every = count, every
        self.samples: list[torch.Tensor] = []

    def on_train_start(self, run: RunContext, state: TrainState) -> None:
        self.writer, self.to_input, self.epochs = run.writer, run.prep.eval, run.config.train.epochs
        if has_clusters(state.eval_model):
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
            if isinstance(model, ContextCluster):
                picture = image_strip(model, x, sample)
            else:
                picture = point_strip(model, x, f"epoch {epoch}, validation sample {i}")
            writer.add_image(f"clusters/sample_{i}", picture, epoch, dataformats="HWC")
        model.train(was_training)


def image_strip(model: ContextCluster, x: torch.Tensor, image: torch.Tensor) -> np.ndarray:
    """Every stage's clusters over ``image`` (uint8 ``[C, H, W]``), side by side."""
    with torch.no_grad(), model.capture_assignments() as maps:
        model(x)
    side = display_side(image.shape[-1])
    scale = (side // image.shape[-2], side // image.shape[-1])
    display = image.expand(3, -1, -1).permute(1, 2, 0).cpu().numpy()
    display = display.repeat(scale[0], axis=0).repeat(scale[1], axis=1)  # nearest: small images stay crisp
    pictures = []
    for stage, blocks in enumerate(block_counts(model)):
        pictures.append(
            render_image_clusters(display, image_clusters(model, maps, stage, blocks - 1, 0), 0.5)
        )
        pictures.append(np.full((display.shape[0], GAP, 3), 255, np.uint8))
    return np.concatenate(pictures[:-1], axis=1)


def point_strip(model: PointMLP | PointSetCoC, x: torch.Tensor, title: str) -> np.ndarray:
    """One view per stage of the cloud ``x`` ``[1, N, 3]``, coloured by the last cluster block's groups
    (point-set CoCs: by the centers the points joined)."""
    if isinstance(model, PointSetCoC):
        with torch.no_grad(), model.capture_clusters() as captured:
            model(x)
        keys, layers = set_layers(model, captured, 0)
        last = [
            layers[keys.index((s, len(blocks) - 1))] for s, blocks in enumerate(model.stages) if len(blocks)
        ]
        return render_layers([(layer, VIEWS[0]) for layer in last], title)
    _, stages = capture_points(model, x)
    depth = survival(stages)
    layers = [
        stage_layer(stages, depth, s, cluster_blocks(model, s) - 1, 0) for s in range(len(model.stages))
    ]
    return render_layers([(layer, VIEWS[0]) for layer in layers], title)
