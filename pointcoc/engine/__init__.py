"""Training and evaluation engine behind ``main.py train`` / ``main.py test``.

config.py (recipes and overrides), data.py (splits, batch preparation, loss targets), optim.py (optimiser,
schedule), trainer.py (loop, selection, resume), evaluate.py (scores, voting), metrics.py, checkpoint.py,
distributed.py (torchrun / DDP), rundir.py (environment and memory records).
"""

from .checkpoint import load_checkpoint, save_atomic
from .config import load_config, parse_overrides
from .metrics import summarize
from .trainer import evaluate_checkpoint, train

__all__ = [
    "evaluate_checkpoint",
    "load_checkpoint",
    "load_config",
    "parse_overrides",
    "save_atomic",
    "summarize",
    "train",
]
