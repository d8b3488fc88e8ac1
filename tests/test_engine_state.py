"""TrainState: one state_dict for a checkpoint, restored exactly; selection of the best validation epoch."""

import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from pointcoc.engine.config import load_config
from pointcoc.engine.data import BatchPrep, RunData
from pointcoc.engine.loaders import make_loader
from pointcoc.engine.state import TrainState
from pointcoc.engine.trainer import epoch_seed, train_one_epoch
from pointcoc.utils.serialization import safe_load

CPU = torch.device("cpu")
TRAIN = load_config(None, [
    "train.optimizer=adamw", "train.lr=0.01", "train.min_lr=0.001", "train.warmup_epochs=1",
    "train.epochs=4", "train.ema_decay=0.9", "train.grad_clip=1.0", "train.batch_size=8",
]).train  # fmt: skip


def tiny_run() -> tuple[TrainState, torch.utils.data.DataLoader, BatchPrep]:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 5), torch.arange(32) % 3)
    run_data = RunData(data, data, None, ["a", "b", "c"], "points")
    model = nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    loader = make_loader(data, TRAIN.batch_size, device=CPU, shuffle_seed=0)
    prep = BatchPrep(run_data, load_config().data, 0.1, CPU)
    return TrainState(model, TRAIN, len(loader), CPU), loader, prep


def run_epoch(state: TrainState, loader, prep, epoch: int) -> dict:
    loader.sampler.set_epoch(epoch)
    torch.manual_seed(epoch_seed(0, epoch, 0))
    record = {"epoch": epoch + 1, **train_one_epoch(state, state.model, loader, prep, TRAIN)}
    state.history.append(record)
    state.epoch = epoch + 1
    return record


def test_state_dict_round_trip_through_a_file_continues_identically(tmp_path):
    a, loader, prep = tiny_run()
    for epoch in range(2):
        run_epoch(a, loader, prep, epoch)
    a.select(2, {"oa": 0.5})
    a.train_seconds = 1.5
    torch.save(a.state_dict(), tmp_path / "state.pt")

    b, _, _ = tiny_run()  # a fresh state: other weights, untouched optimiser and schedule
    b.load_state_dict(safe_load(tmp_path / "state.pt"))  # weights_only: plain containers and tensors
    assert (b.epoch, b.best, b.train_seconds, b.history) == (2, {"epoch": 2, "metrics": {"oa": 0.5}}, 1.5,
                                                              a.history)  # fmt: skip
    assert b.lr == a.lr and b.scheduler.last_epoch == a.scheduler.last_epoch == 2 * len(loader)
    for part in ("model", "ema", "optimizer"):
        assert str(b.state_dict()[part]) == str(a.state_dict()[part]), part

    # the next epoch of the restored state is the next epoch of the original, bit for bit
    ra, rb = run_epoch(a, loader, prep, 2), run_epoch(b, loader, prep, 2)
    assert ra == rb and a.history == b.history
    for key, value in a.eval_model.state_dict().items():
        assert torch.equal(value, b.eval_model.state_dict()[key]), key
    assert a.eval_model is a.ema.module and not torch.equal(a.model[0].weight, a.ema.module[0].weight)


def test_select_keeps_the_best_validation_epoch_and_its_weights():
    state, _, _ = tiny_run()
    assert state.select(1, {"oa": 0.4}) and state.best == {"epoch": 1, "metrics": {"oa": 0.4}}
    kept = state.best_weights["0.weight"].clone()
    with torch.no_grad():
        state.ema.module[0].weight.add_(1.0)
    assert not state.select(2, {"oa": 0.4})  # a tie keeps the earlier epoch
    assert state.best["epoch"] == 1 and torch.equal(state.best_weights["0.weight"], kept)
    assert state.select(3, {"oa": 0.6}) and state.best["epoch"] == 3
    assert torch.equal(state.best_weights["0.weight"], kept + 1.0)  # a copy of the EMA weights
