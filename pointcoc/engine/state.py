"""What a training run carries from step to step and epoch to epoch, and writes into its checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .config import TrainConfig
from .optim import build_optimizer, build_scheduler


class TrainState:
    """The model, its EMA copy (``train.ema_decay``), optimiser, per-step schedule and fp16 gradient scaler,
    plus the run's record: epochs done, best validation result, per-epoch history, training seconds.

    ``state_dict()`` is what a checkpoint holds (besides the config, class names and model interface) and
    ``load_state_dict()`` restores it exactly, so a resumed run continues as if never stopped.
    """

    def __init__(
        self, model: nn.Module, train: TrainConfig, steps_per_epoch: int, device: torch.device
    ) -> None:
        self.model = model
        self.ema: AveragedModel | None = None
        if train.ema_decay is not None:
            self.ema = AveragedModel(
                model, multi_avg_fn=get_ema_multi_avg_fn(train.ema_decay), use_buffers=True
            )
        self.optimizer = build_optimizer(model, train)
        self.scheduler = build_scheduler(self.optimizer, train, steps_per_epoch)
        self.scaler = torch.amp.GradScaler(device.type, enabled=train.amp == "fp16")
        self.epoch = 0  # epochs completed
        self.best: dict[str, Any] | None = None  # {"epoch", "metrics"} of the selected epoch so far
        self.history: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        # the evaluation weights of the best epoch, for the final test (on disk: checkpoint_best.pt)
        self.best_weights: dict[str, torch.Tensor] = {}

    @property
    def eval_model(self) -> nn.Module:
        """The weights evaluated and selected: the EMA copy when the run keeps one."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def select(
        self, epoch: int, val: dict[str, Any], score: Callable[[dict[str, Any]], float] = lambda m: m["oa"]
    ) -> bool:
        """Keep ``val`` (the metrics of ``epoch`` on the selection split) and a copy of the evaluation weights
        when its ``score`` (default: OA) strictly beats the best so far; returns whether it did."""
        if self.best is not None and score(val) <= score(self.best["metrics"]):
            return False
        self.best = {"epoch": epoch, "metrics": val}
        self.best_weights = {k: v.detach().clone() for k, v in self.eval_model.state_dict().items()}
        return True

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "best": self.best,
            "history": self.history,
            "train_seconds": self.train_seconds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.best, self.train_seconds = state["epoch"], state["best"], state["train_seconds"]
        self.history = list(state["history"])
