"""Epoch callbacks: called once per epoch on the main process with the run, the state and the epoch's
metrics; the engine's own TensorBoard scalars go through one; the engine imports no visualisation."""

import subprocess
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_engine_helpers import tiny_point_config

from pointcoc.engine import Callback, train
from pointcoc.engine.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_train_start(self, run, state) -> None:
        self.out, self.tested = run.out, len(run.data.test)
        self.calls.append(("start", state.epoch, run.config.train.epochs, len(run.data.classes)))

    def on_epoch_end(self, epoch, state, metrics) -> None:
        # after the best checkpoint of this epoch, before its last checkpoint
        last = load_checkpoint(self.out / "checkpoint_last.pt")["epoch"] if epoch > 1 else 0
        best = load_checkpoint(self.out / "checkpoint_best.pt")["epoch"] if state.best else None
        assert metrics["epoch"] == epoch == state.epoch and state.history[-1]["loss"] == metrics["loss"]
        self.calls.append(("epoch", epoch, sorted(metrics), last, best))

    def on_train_end(self, state, metrics) -> None:
        assert metrics["test_confusion"].sum() == self.tested and "test" in metrics
        self.calls.append(("end", state.epoch, metrics["selection"]["best_epoch"] == state.best["epoch"]))


def test_callbacks_are_called_once_per_epoch_with_the_epoch_metrics(tmp_path):
    recorder = Recorder()
    config = tiny_point_config("train.eval_every=2")
    train(config, tmp_path, callbacks=[recorder])
    plain = ["acc", "epoch", "loss", "lr"]
    validated = sorted([*plain, "val", "val_confusion", "val_macc", "val_oa"])
    assert recorder.calls == [
        ("start", 0, 3, 3),
        ("epoch", 1, plain, 0, None),
        ("epoch", 2, validated, 1, 2),
        ("epoch", 3, validated, 2, recorder.calls[3][4]),  # epoch 3 is the best only if it beat epoch 2
        ("end", 3, True),
    ]
    assert recorder.calls[3][4] in (2, 3)

    # the engine's own callback: scalars every epoch, validation when evaluated, both confusion matrices,
    # and no cluster pictures (main.py adds those)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "train/acc", "train/lr", "val/oa", "val/macc"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]
    assert [e.step for e in events.Scalars("val/oa")] == [2, 3]
    assert sorted(tags["images"]) == ["test/confusion", "val/confusion_last"]


def test_the_engine_imports_no_visualisation_even_when_training(tmp_path):
    code = (
        "import sys; sys.path.insert(0, 'tests'); import pointcoc.engine\n"
        "from test_engine_helpers import tiny_point_config\n"
        "assert not [m for m in sys.modules if m.startswith('pointcoc.viz')], 'import'\n"
        f"pointcoc.engine.train(tiny_point_config('train.epochs=1'), {str(tmp_path / 'run')!r})\n"
        "viz = [m for m in sys.modules if m.startswith('pointcoc.viz')]\n"
        "assert not viz, viz\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "metrics.json").is_file()
