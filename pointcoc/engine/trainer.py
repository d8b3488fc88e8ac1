"""``train`` and ``test``: the training loop, model selection on validation, run directory, resume."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from ..models import create_model
from ..utils.amp import autocast
from ..utils.serialization import load_state_dict_strict
from .checkpoint import check_compatible, load_checkpoint, save_atomic
from .config import save_config
from .data import BatchPrep, build_run_data, soft_cross_entropy, voting_views
from .distributed import all_reduce_sum, barrier, init_distributed, is_main, local_rank
from .evaluate import metrics_of, predict, vote
from .optim import build_optimizer, build_scheduler, total_epochs
from .rundir import environment, peak_memory, write_json


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use device=cpu")
    return device


def build_model(config: dict[str, Any], num_classes: int, is_points: bool) -> nn.Module:
    """The model a run config describes (point models take ``num_points`` from the data config)."""
    kwargs = dict(config["model"]["kwargs"])
    if is_points:
        kwargs.setdefault("num_points", int(config["data"]["num_points"]))
    model = create_model(config["model"]["name"], num_classes=num_classes, **kwargs)
    if config["runtime"]["grad_checkpointing"]:
        if not hasattr(model, "set_grad_checkpointing"):
            raise ValueError(
                f"runtime.grad_checkpointing: {config['model']['name']} does not support it; set it to false"
            )
        model.set_grad_checkpointing(True)
    return model


def _setup(config: dict[str, Any]) -> tuple[torch.device, int, int]:
    device = resolve_device(str(config["device"]))
    rank, world = init_distributed(device.type)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    if int(config["runtime"]["threads"]) > 0:
        torch.set_num_threads(int(config["runtime"]["threads"]))
    return device, rank, world


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    # Each epoch's randomness (augmentation, dropout, kornia) is a function of (seed, epoch, rank) alone,
    # so a resumed run replays exactly what an uninterrupted one would have drawn.
    return (seed * 1_000_003 + epoch * 7_919 + rank * 104_729) % 2**63


def evaluation_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights a checkpoint is evaluated with: the EMA copy when the run kept one."""
    if state.get("ema") is None:
        return state["model"]
    return {k[len("module.") :]: v for k, v in state["ema"].items() if k.startswith("module.")}


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    load_state_dict_strict(model, weights, path)


def _log_confusion(writer: Any, tag: str, matrix: np.ndarray, step: int) -> None:
    rows = matrix.sum(axis=1, keepdims=True).clip(min=1)
    image = torch.from_numpy(matrix / rows).float()
    # nearest-neighbour upscaling so small matrices stay legible in TensorBoard
    scale = max(1, 256 // max(matrix.shape))
    writer.add_image(tag, image.repeat_interleave(scale, 0).repeat_interleave(scale, 1)[None], step)


def train(config: dict[str, Any], out: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train per ``config`` into ``out``; returns (and writes) ``out/metrics.json``'s content."""
    start = time.perf_counter()
    device, rank, world = _setup(config)
    out = Path(out)
    last_path, best_path = out / "checkpoint_last.pt", out / "checkpoint_best.pt"
    if resume and not last_path.is_file():
        raise ValueError(f"--resume: {last_path} does not exist")
    if not resume and last_path.exists():
        raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    state = load_checkpoint(last_path) if resume else None
    if state is not None:
        check_compatible(state, config, last_path, resume=True)
    tr, seed = config["train"], int(config["seed"])
    if int(tr["batch_size"]) % world:
        raise ValueError(f"train.batch_size {tr['batch_size']} is not divisible by the {world} processes")

    run_data = build_run_data(config["data"])
    prep = BatchPrep(run_data, config["data"], float(tr["label_smoothing"]), device)
    torch.manual_seed(seed)
    model = build_model(config, len(run_data.classes), run_data.is_points).to(device)
    if config["runtime"]["sync_bn"] and world > 1 and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ema = None
    if tr["ema_decay"] is not None:
        ema = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(float(tr["ema_decay"])), use_buffers=True
        )
    sampler = DistributedSampler(run_data.train, world, rank, shuffle=True, seed=seed, drop_last=True)
    loader = DataLoader(
        run_data.train, batch_size=int(tr["batch_size"]) // world, sampler=sampler, drop_last=True,
        num_workers=int(config["data"]["num_workers"]), pin_memory=device.type == "cuda",
    )  # fmt: skip
    if len(loader) == 0:
        raise ValueError(f"{len(run_data.train)} training samples make no full batch of {tr['batch_size']}")
    optimizer = build_optimizer(model, tr)
    scheduler = build_scheduler(optimizer, tr, len(loader))
    scaler = torch.amp.GradScaler(device.type, enabled=tr["amp"] == "fp16")
    epoch0, best, history, train_seconds = 0, None, [], 0.0
    best_weights: dict[str, torch.Tensor] = {}
    if state is not None:
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        epoch0, best, history, train_seconds = (
            state["epoch"],
            state["best"],
            state["history"],
            state["train_seconds"],
        )
        # every rank reads it: resuming assumes the run directory is shared, as checkpoint_last.pt is
        best_weights = evaluation_weights(load_checkpoint(best_path))
    raw = model  # unwrapped, for state dicts and evaluation
    step_model: nn.Module = torch.compile(model) if config["runtime"]["compile"] else model
    if world > 1:
        step_model = DistributedDataParallel(
            step_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    eval_model = ema.module if ema is not None else raw
    main = is_main()
    writer = None
    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.yaml")
        write_json(environment(), out / "environment.json")
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"), purge_step=epoch0 + 1 if resume else None)
    pictures = None
    if writer is not None and int(config["log"]["cluster_images_every"]) > 0:
        from ..viz.tensorboard import ClusterPictures, has_clusters  # matplotlib: only when used

        log = config["log"]
        if has_clusters(eval_model):
            pictures = ClusterPictures(run_data.val, int(log["cluster_images"]),
                                       int(log["cluster_images_every"]), prep.eval)  # fmt: skip

    epochs, eval_batch = total_epochs(tr), int(tr["batch_size"])
    clip = tr["grad_clip"]

    def score(dataset: Any) -> tuple[dict[str, Any], np.ndarray]:
        scores = predict(
            eval_model,
            dataset,
            prep,
            eval_batch,
            tr["amp"],
            rank,
            world,
            num_workers=int(config["data"]["num_workers"]),
        )
        return metrics_of(*scores, run_data.classes)

    def snapshot(epoch: int, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "model": raw.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch,
            "best": best,
            "history": records,
            "train_seconds": train_seconds,
            "config": config,
            "classes": run_data.classes,
        }

    for epoch in range(epoch0, epochs):
        t0 = time.perf_counter()
        step_model.train()
        sampler.set_epoch(epoch)
        torch.manual_seed(_epoch_seed(seed, epoch, rank))
        sums = torch.zeros(2, device=device)  # loss * n and correct: kept on device, read once an epoch
        seen = 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True,
                   disable=not (main and config["runtime"]["progress"]))  # fmt: skip
        for x, y in bar:
            inputs, targets = prep.train(x, y)
            with autocast(device, tr["amp"]):
                logits = step_model(inputs)
            loss = soft_cross_entropy(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(raw.parameters(), float(clip))
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(raw)
            n = targets.shape[0]
            sums += torch.stack([loss.detach() * n, (logits.argmax(1) == targets.argmax(1)).sum()])
            seen += n
        totals = all_reduce_sum(torch.cat([sums, torch.tensor([float(seen)], device=device)]))
        loss_mean, acc = (totals[:2] / totals[2]).tolist()
        train_seconds += time.perf_counter() - t0
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": loss_mean,
            "acc": acc,
            "lr": scheduler.get_last_lr()[0],
        }
        last_epoch = epoch + 1 == epochs
        if last_epoch or (epoch + 1) % int(tr["eval_every"]) == 0:
            val, matrix = score(run_data.val)
            record.update(val_oa=val["oa"], val_macc=val["macc"], val=val)
            if best is None or val["oa"] > best["metrics"]["oa"]:
                best = {"epoch": epoch + 1, "metrics": val}
                best_weights = {k: v.detach().clone() for k, v in eval_model.state_dict().items()}
                if main:
                    save_atomic(snapshot(epoch + 1, history + [record]), best_path)
            if writer is not None:
                writer.add_scalar("val/oa", val["oa"], epoch + 1)
                writer.add_scalar("val/macc", val["macc"], epoch + 1)
                if last_epoch:
                    _log_confusion(writer, "val/confusion_last", matrix, epoch + 1)
        history.append(record)
        if main:
            bar.close()
            tqdm.write(f"epoch {epoch + 1}/{epochs}  loss {loss_mean:.4f}  train acc {acc:.3f}"
                       + (f"  val oa {record['val_oa']:.3f}" if "val_oa" in record else "")
                       + f"  lr {record['lr']:.2e}  {time.perf_counter() - t0:.1f}s")  # fmt: skip
            writer.add_scalar("train/loss", loss_mean, epoch + 1)
            writer.add_scalar("train/acc", acc, epoch + 1)
            writer.add_scalar("train/lr", record["lr"], epoch + 1)
            if pictures is not None and pictures.due(epoch + 1, last_epoch):
                pictures.log(writer, eval_model, epoch + 1)
            save_atomic(snapshot(epoch + 1, history), last_path)
        barrier()

    metrics: dict[str, Any] = {
        "val": {"last": history[-1]["val"], "best": best["metrics"]},
        "selection": {
            "best_epoch": best["epoch"],
            "last_epoch": epochs,
            "criterion": "val oa",
            "test_model": "best",
        },  # fmt: skip
    }
    t_test = time.perf_counter()
    if run_data.test is not None:
        # the one evaluation of the test split: the best-on-validation weights
        eval_model.load_state_dict(best_weights)
        test, matrix = score(run_data.test)
        metrics["test"] = test
        if writer is not None:
            _log_confusion(writer, "test/confusion", matrix, best["epoch"])
    metrics["timing"] = {
        "train_s": train_seconds,
        "test_s": time.perf_counter() - t_test,
        "this_process_s": time.perf_counter() - start,
        "epochs": epochs,
        "epochs_this_process": epochs - epoch0,
    }
    metrics["peak_memory"] = peak_memory(device)
    metrics["history"] = [{k: v for k, v in r.items() if k != "val"} for r in history]
    if main:
        write_json(metrics, out / "metrics.json")
        writer.close()
    return metrics


def evaluate_checkpoint(
    config: dict[str, Any], checkpoint: str | Path, out: str | Path, votes: int = 0
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on ``data.split``; with ``votes`` also the voted accuracy, reported apart."""
    start = time.perf_counter()
    device, rank, world = _setup(config)
    state = load_checkpoint(checkpoint)
    check_compatible(state, config, checkpoint, resume=False)
    run_data = build_run_data(config["data"], train=False)
    prep = BatchPrep(run_data, {**config["data"], "augment": False}, 0.0, device)
    model = build_model(config, len(run_data.classes), run_data.is_points).to(device)
    load_weights(model, evaluation_weights(state), Path(checkpoint))
    tr = config["train"]
    metrics: dict[str, Any] = {}
    metrics["test"], matrix = metrics_of(
        *predict(model, run_data.test, prep, int(tr["batch_size"]), tr["amp"], rank, world), run_data.classes
    )
    if votes > 0:
        if not run_data.is_points:
            raise ValueError("--votes averages augmented point-cloud views; it is not defined for images")
        views = voting_views(config["data"], run_data.test)
        metrics["test_votes"], _ = metrics_of(
            *vote(
                model, views, prep, votes, int(config["seed"]), int(tr["batch_size"]), tr["amp"], rank, world
            ),
            run_data.classes,
        )
        metrics["votes"] = {"views": votes, "seed": int(config["seed"])}
    metrics["checkpoint"] = {"path": str(checkpoint), "epoch": state["epoch"]}
    metrics["confusion_matrix"] = matrix.tolist()
    metrics["timing"] = {"total_s": time.perf_counter() - start}
    metrics["peak_memory"] = peak_memory(device)
    if is_main():
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.yaml")
        write_json(environment(), out / "environment.json")
        write_json(metrics, out / "metrics.json")
    return metrics
