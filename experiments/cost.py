"""Model cost of a table row: parameters, MACs (as ``main.py info`` counts them) and inference throughput.

Measured once per row, for the model a finished run trained (its class count read from the checkpoint), and
kept in ``<out>/<table>/<row>/model.json``; measured again only when the model, input or batch changes.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

import torch

from pointcoc.engine.build import build_model, resolve_device
from pointcoc.engine.checkpoint import load_checkpoint
from pointcoc.engine.config import RunConfig
from pointcoc.engine.rundir import write_json
from pointcoc.utils.flops import COUNTED, count_macs
from pointcoc.utils.measure import interleaved_times, make_infer_step

from .seeds import SeedRun, read_json

WARMUP, TIMED = 3, 10  # forward passes before and during the throughput measurement


def throughput(model: torch.nn.Module, batch: torch.Tensor, device: torch.device) -> float:
    """Samples per second of eval-mode float32 forwards of ``batch`` (median step after ``WARMUP``
    untimed ones), measured as ``main.py bench`` measures inference."""
    model, batch = model.to(device), batch.to(device)
    times = interleaved_times({"infer": make_infer_step(model, batch)}, WARMUP, TIMED, device)["infer"]
    return len(batch) / statistics.median(times)


def example(model: torch.nn.Module, config: RunConfig, batch: int) -> torch.Tensor:
    """A batch shaped like the run's inputs: its points per shape (the model was built with them), or the
    run's image size."""
    if model.model_cfg.is_points:
        return model.example_input(batch)
    return model.example_input(batch, config.data.recipe().image_size)


def row_cost(run: SeedRun) -> dict[str, Any] | None:
    """The row's cost record (measured now if ``model.json`` is absent or stale); None before any seed of
    the row has finished."""
    checkpoint = run.path / "checkpoint_best.pt"
    if run.metrics() is None or not checkpoint.is_file():
        return None
    table, config = run.table, run.config
    path = run.path.parent / "model.json"
    num_classes = len(load_checkpoint(checkpoint)["classes"])
    points = table.track == "points"
    key = {
        "model": config.model.name,
        "kwargs": dict(config.model.kwargs),
        "num_points": config.data.num_points if points else None,
        "num_classes": num_classes,
        "throughput_batch": table.throughput_batch,
        "device": config.device,
    }
    saved = read_json(path)
    if saved is not None and saved.get("key") == json.loads(json.dumps(key)):
        return saved
    torch.manual_seed(0)
    model = build_model(config, num_classes, "points" if points else "image")
    one = example(model, config, 1)
    macs, _ = count_macs(model, one)
    record: dict[str, Any] = {
        "key": key,
        "input": list(one.shape),
        "params": sum(p.numel() for p in model.parameters()),
        "macs": macs,
        "counted": COUNTED,
        "throughput": None,
    }
    if table.throughput_batch:
        device = resolve_device(config.device)
        if config.runtime.threads > 0:
            torch.set_num_threads(config.runtime.threads)
        rate = throughput(model, example(model, config, int(table.throughput_batch)), device)
        record["throughput"] = {
            "samples_per_s": rate,
            "batch": int(table.throughput_batch),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(),
            "precision": "float32",
        }
    write_json(record, path)
    return record
