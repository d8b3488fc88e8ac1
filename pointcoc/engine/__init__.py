"""Training and evaluation engine behind ``main.py train`` / ``main.py test``.

config.py (typed run config: recipes, ``_base_`` includes, overrides), build.py (device, ``build_model``, the
trained model a checkpoint holds), data.py (splits, batch preparation, loss targets), loaders.py (every
DataLoader), optim.py (optimiser, schedule), state.py (``TrainState``: what a checkpoint restores),
trainer.py (``train_one_epoch``, ``train``: selection, resume), callbacks.py (epoch hooks, TensorBoard
scalars), evaluate.py (``predict``, ``evaluate``, ``vote``, the ``test`` command), metrics.py, checkpoint.py,
distributed.py (torchrun / DDP), rundir.py (environment and memory records), runfolder.py (what may be
written where, one writer per run folder, the console's log).

The engine imports no visualisation: ``main.py`` passes the TensorBoard cluster pictures in as a callback.
"""

from .build import TrainedModel, build_model, compile_model, load_trained_model, resolve_device
from .callbacks import Callback, RunContext
from .checkpoint import load_checkpoint, save_atomic
from .config import RunConfig, load_config, parse_overrides
from .evaluate import EvalContext, evaluate_checkpoint
from .metrics import summarize
from .state import TrainState
from .trainer import train, train_one_epoch

__all__ = [
    "Callback",
    "EvalContext",
    "RunConfig",
    "RunContext",
    "TrainState",
    "TrainedModel",
    "build_model",
    "compile_model",
    "evaluate_checkpoint",
    "load_checkpoint",
    "load_config",
    "load_trained_model",
    "parse_overrides",
    "resolve_device",
    "save_atomic",
    "summarize",
    "train",
    "train_one_epoch",
]
