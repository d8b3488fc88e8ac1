"""Tiny configs shared by the engine tests (no tests here): they train in seconds on 2 CPU cores."""

from __future__ import annotations

from pointcoc.engine.config import RunConfig, load_config


def tiny_point_config(*extra: str) -> RunConfig:
    return load_config(None, [
        "device=cpu", "seed=3", "runtime.progress=false", "runtime.threads=1",
        "model.name=pointmlp_elite", "model.kwargs={k_neighbors: [8, 8, 8, 8], drop_rate: 0.0}",
        "data.num_points=64", "data.kwargs={per_class: 4, classes: 3}",
        "train.epochs=3", "train.batch_size=4", "train.optimizer=adamw", "train.lr=0.003",
        "train.weight_decay=0.01", "train.min_lr=0.0001", "train.warmup_epochs=0.5", *extra,
    ])  # fmt: skip


def tiny_image_config(*extra: str) -> RunConfig:
    """A one-stage CoC on scikit-learn's 8x8 digits: GroupNorm only, so DDP ranks compute exactly what one
    process computes on their union (BatchNorm would normalise each rank's half-batch separately)."""
    return load_config(None, [
        "device=cpu", "seed=5", "runtime.progress=false", "runtime.threads=1",
        "model.name=coc_tiny",
        "model.kwargs={layers: [1], embed_dims: [8], mlp_ratios: [2], heads: [1], head_dim: [8], "
        "proposal_w: [2], proposal_h: [2], fold_w: [1], fold_h: [1], downsamples: [false], "
        "in_patch_size: 2, in_stride: 2}",
        "data.name=digits", "data.augment=false", "data.kwargs={channels: 3}",
        "train.epochs=1", "train.batch_size=128", "train.optimizer=sgd", "train.lr=0.5", "train.min_lr=0.5",
        *extra,
    ])  # fmt: skip
