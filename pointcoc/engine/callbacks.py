"""Epoch callbacks: what training does besides training, on the main process (rank 0).

The engine logs its scalars and confusion matrices to TensorBoard through :class:`TensorBoardLog`; callers add
their own (``main.py`` adds the cluster pictures of :mod:`pointcoc.viz.tensorboard`), so the engine needs no
knowledge of what they draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import RunConfig
from .data import BatchPrep, RunData
from .optim import total_epochs
from .state import TrainState


@dataclass
class RunContext:
    """The run a callback serves: its config and folder, datasets, batch preparation (``prep.eval`` turns a
    batch of dataset items into model inputs) and the TensorBoard writer of ``out/tensorboard``."""

    config: RunConfig
    out: Path
    data: RunData
    prep: BatchPrep
    writer: Any  # torch.utils.tensorboard.SummaryWriter


class Callback:
    """Hooks of the training loop, called on the main process only; override the ones needed.

    ``on_epoch_end`` gets the epoch's history record (``epoch``, ``loss``, ``acc``, ``lr``; after validation
    also ``val_oa``, ``val_macc``, ``val`` and the confusion matrix ``val_confusion``; under the official
    protocol ``test_*`` in their place: the test split is what it selects on) after the best
    checkpoint and before the last one is written. ``on_train_end`` gets metrics.json's content (plus
    ``test_confusion`` when the test split was evaluated).
    """

    def on_train_start(self, run: RunContext, state: TrainState) -> None:
        pass

    def on_epoch_end(self, epoch: int, state: TrainState, metrics: dict[str, Any]) -> None:
        pass

    def on_train_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        pass


class TensorBoardLog(Callback):
    """Training loss, accuracy and learning rate every epoch; validation (official protocol: test) OA / mAcc
    when evaluated; the last epoch's and the test confusion matrices (rows normalised)."""

    def on_train_start(self, run: RunContext, state: TrainState) -> None:
        self.writer, self.epochs = run.writer, total_epochs(run.config.train)  # with the cooldown

    def on_epoch_end(self, epoch: int, state: TrainState, metrics: dict[str, Any]) -> None:
        for split in ("val", "test"):  # test: the official protocol scores it every epoch
            if split in metrics:
                self.writer.add_scalar(f"{split}/oa", metrics[f"{split}_oa"], epoch)
                self.writer.add_scalar(f"{split}/macc", metrics[f"{split}_macc"], epoch)
                if epoch == self.epochs:
                    self._confusion(f"{split}/confusion_last", metrics[f"{split}_confusion"], epoch)
        for key in ("loss", "acc", "lr"):
            self.writer.add_scalar(f"train/{key}", metrics[key], epoch)

    def on_train_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        if "test_confusion" in metrics:
            self._confusion("test/confusion", metrics["test_confusion"], metrics["selection"]["best_epoch"])

    def _confusion(self, tag: str, matrix: np.ndarray, step: int) -> None:
        rows = matrix.sum(axis=1, keepdims=True).clip(min=1)
        image = torch.from_numpy(matrix / rows).float()
        # nearest-neighbour upscaling so small matrices stay legible in TensorBoard
        scale = max(1, 256 // max(matrix.shape))
        self.writer.add_image(tag, image.repeat_interleave(scale, 0).repeat_interleave(scale, 1)[None], step)
