"""``train``: one epoch of optimisation, model selection (heldout: on validation; official: on the test
split), the run directory and resume."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..utils.amp import autocast
from .build import build_model, compile_model, evaluation_weights, run_model_cfg, setup_process
from .callbacks import Callback, RunContext, TensorBoardLog
from .checkpoint import check_compatible, load_checkpoint, save_atomic
from .config import RunConfig, TrainConfig, save_config
from .data import BatchPrep, RunData, build_run_data, class_weights, dataset_labels, soft_cross_entropy
from .distributed import Dist, all_reduce_sum, barrier, is_main
from .evaluate import EvalContext, evaluate
from .loaders import make_loader
from .optim import total_epochs
from .rundir import environment, peak_memory, write_json
from .runfolder import console, open_training_folder
from .selection import heldout_score, official_score, official_selection
from .state import TrainState
from .sync_bn import convert_sync_bn, distributed_record, wants_sync_bn

LAST, BEST = "checkpoint_last.pt", "checkpoint_best.pt"


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    # Each epoch's randomness (augmentation, dropout, kornia) is a function of (seed, epoch, rank) alone,
    # so a resumed run replays exactly what an uninterrupted one would have drawn.
    return (seed * 1_000_003 + epoch * 7_919 + rank * 104_729) % 2**63


def train_one_epoch(
    state: TrainState,
    model: nn.Module,
    loader: DataLoader,
    prep: BatchPrep,
    train: TrainConfig,
    desc: str | None = None,
    loss_weight: torch.Tensor | None = None,
) -> dict[str, float]:
    """One pass over ``loader``, stepping ``state`` (``model`` is the module to run: ``state.model`` or its
    compiled / DDP wrapper). Returns the epoch's mean ``loss``, training ``acc`` (reduced across ranks) and
    the ``lr`` reached. ``desc``: the progress bar's label (None: no bar); ``loss_weight``: per-class loss
    factors (``train.class_balance: loss``)."""
    model.train()
    device = prep.device
    sums = torch.zeros(2, device=device)  # loss * n and correct: kept on device, read once an epoch
    seen = 0
    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=desc is None,
               file=console(sys.stderr))  # fmt: skip
    for x, y in bar:
        inputs, targets = prep.train(x, y)
        with autocast(device, train.amp):
            logits = model(inputs)
        loss = soft_cross_entropy(logits, targets, loss_weight)
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(loss).backward()
        if train.grad_clip is not None:
            state.scaler.unscale_(state.optimizer)
            nn.utils.clip_grad_norm_(state.model.parameters(), train.grad_clip)
        state.scaler.step(state.optimizer)
        state.scaler.update()
        state.scheduler.step()
        if state.ema is not None:
            state.ema.update_parameters(state.model)
        n = targets.shape[0]
        sums += torch.stack([loss.detach() * n, (logits.argmax(1) == targets.argmax(1)).sum()])
        seen += n
    bar.close()
    totals = all_reduce_sum(torch.cat([sums, torch.tensor([float(seen)], device=device)]))
    loss_mean, acc = (totals[:2] / totals[2]).tolist()
    return {"loss": loss_mean, "acc": acc, "lr": state.lr}


def train(
    config: RunConfig, out: str | Path, resume: bool = False, callbacks: Sequence[Callback] = ()
) -> dict[str, Any]:
    """Train per ``config`` into ``out``; returns (and writes) ``out/metrics.json``'s content.

    ``out`` is refused when it holds results (unless ``resume``) or another process writes it; the console
    is logged to ``out/train.log`` (see :mod:`.runfolder`). Progress bars are drawn on a terminal only
    (and with ``runtime.progress``); otherwise each epoch prints one line. ``callbacks`` run on the main
    process after the engine's own :class:`TensorBoardLog`."""
    out = Path(out)
    with open_training_folder(out, resume):
        return _train(config, out, resume, callbacks)


def _train(config: RunConfig, out: Path, resume: bool, callbacks: Sequence[Callback]) -> dict[str, Any]:
    start = time.perf_counter()
    device, dist = setup_process(config)
    saved = _previous_run(config, out, resume)
    # official: run_data.val is the test split, scored and selected on every epoch
    run_data = build_run_data(config.data, protocol=config.train.protocol)
    prep = BatchPrep(run_data, config.data, config.train.label_smoothing, device)
    sample_weights, loss_weight = _class_balance(config, run_data, device)
    loader = _train_loader(config, run_data, device, dist, sample_weights)
    sync_bn = wants_sync_bn(config.runtime.sync_bn, dist.world, run_data.is_points)
    state = _fresh_state(config, run_data, len(loader), device, sync_bn)
    if saved is not None:
        state.load_state_dict(saved)
        # every rank reads it: resuming assumes the run directory is shared, as checkpoint_last.pt is
        state.best_weights = evaluation_weights(load_checkpoint(out / BEST))
    step_model = _step_model(state.model, config, device, dist)
    ctx = EvalContext.of_run(config, prep, dist)
    about = {  # what a checkpoint holds besides the training state
        "config": config.to_dict(),
        "classes": run_data.classes,
        "model_cfg": run_model_cfg(state.model.model_cfg, config, run_data.eval_input_size()).to_dict(),
    }
    main = is_main()
    hooks: list[Callback] = [TensorBoardLog(), *callbacks] if main else []
    writer = _open_run(config, out, resume, state.epoch) if main else None
    for hook in hooks:
        hook.on_train_start(RunContext(config, out, run_data, prep, writer), state)

    split = "test" if config.train.protocol == "official" else "val"  # what selects the epoch
    score = official_score if split == "test" else heldout_score(config.train.select_on)
    epochs = total_epochs(config.train)
    for epoch in range(state.epoch, epochs):
        t0 = time.perf_counter()
        loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]
        torch.manual_seed(epoch_seed(config.seed, epoch, dist.rank))
        bars = main and config.runtime.progress and console(sys.stderr).isatty()
        desc = f"epoch {epoch + 1}/{epochs}" if bars else None
        stats = train_one_epoch(state, step_model, loader, prep, config.train, desc, loss_weight)
        record = {"epoch": epoch + 1, **stats}
        state.train_seconds += time.perf_counter() - t0
        metrics, improved = dict(record), False
        if epoch + 1 == epochs or (epoch + 1) % config.train.eval_every == 0:
            scored, matrix = evaluate(state.eval_model, run_data.val, ctx, run_data.classes)
            record.update({f"{split}_oa": scored["oa"], f"{split}_macc": scored["macc"], split: scored})
            metrics = {**record, f"{split}_confusion": matrix}
            improved = state.select(epoch + 1, scored, score)
        state.history.append(record)
        state.epoch = epoch + 1
        if main:
            if improved:
                save_atomic({**state.state_dict(), **about}, out / BEST)
            tqdm.write(_epoch_line(record, epochs, time.perf_counter() - t0))
            for hook in hooks:
                hook.on_epoch_end(epoch + 1, state, metrics)
            save_atomic({**state.state_dict(), **about}, out / LAST)
        barrier()

    t_test = time.perf_counter()
    metrics, test_confusion = _test(state, run_data, ctx, config)
    metrics["timing"] = {
        "train_s": state.train_seconds,
        "test_s": time.perf_counter() - t_test,
        "this_process_s": time.perf_counter() - start,
        "epochs": epochs,
        "epochs_this_process": epochs - (saved["epoch"] if saved is not None else 0),
    }
    metrics["peak_memory"] = peak_memory(device)
    metrics["distributed"] = distributed_record(dist, config.train.batch_size, sync_bn)
    metrics["history"] = [{k: v for k, v in r.items() if k not in ("val", "test")} for r in state.history]
    if main:
        write_json(metrics, out / "metrics.json")
        extra = {} if test_confusion is None else {"test_confusion": test_confusion}
        for hook in hooks:
            hook.on_train_end(state, {**metrics, **extra})
        writer.close()
    return metrics


def _class_balance(
    config: RunConfig, run_data: RunData, device: torch.device
) -> tuple[np.ndarray | None, torch.Tensor | None]:
    """``train.class_balance``: per-sample draw weights (``sampler``) or per-class loss factors (``loss``),
    both inverse class frequencies of the training split."""
    if config.train.class_balance == "none":
        return None, None
    labels = dataset_labels(run_data.train)
    weights = class_weights(labels, len(run_data.classes))
    if config.train.class_balance == "sampler":
        return weights[labels], None
    return None, torch.tensor(weights, dtype=torch.float32, device=device)


def _train_loader(
    config: RunConfig, run_data: RunData, device: torch.device, dist: Dist, sample_weights: np.ndarray | None
) -> DataLoader:
    batch = config.train.batch_size
    if batch % dist.world:
        raise ValueError(f"train.batch_size {batch} is not divisible by the {dist.world} processes")
    loader = make_loader(run_data.train, batch, device=device, num_workers=config.data.num_workers,
                         dist=dist, shuffle_seed=config.seed, sample_weights=sample_weights)  # fmt: skip
    if len(loader) == 0:
        raise ValueError(f"{len(run_data.train)} training samples make no full batch of {batch}")
    return loader


def _fresh_state(
    config: RunConfig, run_data: RunData, steps_per_epoch: int, device: torch.device, sync_bn: bool
) -> TrainState:
    """The model's initial weights are drawn from ``seed`` alone (the same on every rank)."""
    torch.manual_seed(config.seed)
    model = build_model(config, len(run_data.classes), run_data.input_kind).to(device)
    if sync_bn:
        model = convert_sync_bn(model, device)
    return TrainState(model, config.train, steps_per_epoch, device)


def _test(
    state: TrainState, run_data: RunData, ctx: EvalContext, config: RunConfig
) -> tuple[dict[str, Any], Any]:
    """The figures of the protocol and its selection. heldout: the validation summary, then the test split
    scored with the last epoch's weights (``test_last``) and with the best-on-validation ones (``test``, and
    its confusion matrix; None without a test split). official: the best test epoch and the separate mAcc
    maximum from the per-epoch history (``test_official``) and the last epoch's test figures."""
    assert state.best is not None  # the last epoch is always evaluated
    last = state.history[-1]
    selection = {"best_epoch": state.best["epoch"], "last_epoch": state.epoch}
    if config.train.protocol == "official":
        official = official_selection(state.history)
        selection.update(criterion="test oa (official protocol)", test_model="best test epoch")
        return {"protocol": "official", "test_official": official, "test_last": last["test"],
                "selection": selection}, None  # fmt: skip
    metrics: dict[str, Any] = {
        "protocol": "heldout",
        "val": {"last": last["val"], "best": state.best["metrics"]},
        "selection": {**selection, "criterion": f"val {config.train.select_on}", "test_model": "best"},
    }
    if run_data.test is None:
        return metrics, None
    if state.best["epoch"] != state.epoch:  # the evaluation model holds the last epoch's weights
        metrics["test_last"], _ = evaluate(state.eval_model, run_data.test, ctx, run_data.classes)
    state.eval_model.load_state_dict(state.best_weights)
    metrics["test"], matrix = evaluate(state.eval_model, run_data.test, ctx, run_data.classes)
    metrics.setdefault("test_last", metrics["test"])
    return metrics, matrix


def _previous_run(config: RunConfig, out: Path, resume: bool) -> dict[str, Any] | None:
    """The checkpoint a resumed run continues from, checked against ``config``."""
    if not resume:
        return None
    last_path = out / LAST
    saved = load_checkpoint(last_path)
    check_compatible(saved, config, last_path, resume=True)
    if is_main():
        done, epochs = saved["epoch"], config.train.epochs
        if done < epochs:
            print(f"resuming from epoch {done + 1} of {epochs} ({last_path})", flush=True)
        else:
            print(f"{last_path}: all {epochs} epochs are done; writing the final metrics again", flush=True)
    return saved


def _step_model(model: nn.Module, config: RunConfig, device: torch.device, dist: Dist) -> nn.Module:
    """The module the training steps run: compiled (``runtime.compile``), wrapped in DDP with several
    processes. ``model`` itself stays the one state dicts and evaluation use."""
    step_model: nn.Module = compile_model(model) if config.runtime.compile else model
    if dist.world > 1:
        step_model = DistributedDataParallel(
            step_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return step_model


def _open_run(config: RunConfig, out: Path, resume: bool, epochs_done: int) -> Any:
    """Write the run's config and environment into ``out``; the TensorBoard writer of ``out/tensorboard``
    (a resumed run drops what a killed process logged after its last checkpoint)."""
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")
    write_json(environment(), out / "environment.json")
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tensorboard"), purge_step=epochs_done + 1 if resume else None)


def _epoch_line(record: dict[str, Any], epochs: int, seconds: float) -> str:
    val = "".join(f"  {split} oa {record[split + '_oa']:.3f}" for split in ("val", "test")
                  if split + "_oa" in record)  # fmt: skip
    return (f"epoch {record['epoch']}/{epochs}  loss {record['loss']:.4f}  train acc {record['acc']:.3f}"
            f"{val}  lr {record['lr']:.2e}  {seconds:.1f}s")  # fmt: skip
