"""Inputs and checkpoints shared by the visualisation tests (no tests here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import pointcoc
from pointcoc.engine import load_config, save_atomic

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IMAGE_CLASSES = ["cat", "coffee cup", "rocket", "astronaut", "camera", "chessboard", "teapot"]
POINT_CLASSES = ["sofa", "table", "desk", "monitor", "airplane", "chair"]
# a narrow CoC-Tiny: the official stage geometry (regions 8/4/2/1, 2x2 centers) at a fraction of the cost
TINY_COC = {"layers": [1, 2, 1, 1], "embed_dims": [16, 16, 32, 32], "mlp_ratios": [2, 2, 2, 2],
            "heads": [2, 2, 3, 3], "head_dim": [8, 8, 8, 8]}  # fmt: skip
TINY_POINTS = {"embed_dim": 16, "k_neighbors": [10, 10, 10, 10], "drop_rate": 0.0}


def real_photo(tmp_path: Path, name: str = "chelsea") -> Path:
    """A public-domain photo from scikit-image: the copy in ../shared/data/photos, else scikit-image's own."""
    shared = SHARED_DATA / "photos" / f"{name}.png"
    if shared.is_file():
        return shared
    data = pytest.importorskip(
        "skimage.data", reason="no photo: ../shared/data/photos absent, no scikit-image"
    )
    from PIL import Image

    path = tmp_path / f"{name}.png"
    Image.fromarray(getattr(data, name)()).save(path)
    return path


def smooth_image(path: Path, size: int = 224) -> Path:
    """A deterministic colourful image (no data needed): smooth gradients plus a disc."""
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size] / size
    disc = ((x - 0.6) ** 2 + (y - 0.4) ** 2 < 0.05).astype(float)
    rgb = np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x * y) * (1 - disc)], axis=-1)
    Image.fromarray((rgb * 255).astype(np.uint8)).save(path)
    return path


def save_checkpoint(path: Path, name: str, kwargs: dict, classes: list[str], *settings: str) -> Path:
    """A checkpoint in the trainer's format (random weights, seeded) for ``name`` with ``classes``."""
    config = load_config(None, [f"model.name={name}", f"model.kwargs={json.dumps(kwargs)}", *settings])
    build = dict(kwargs)
    if name.startswith("pointmlp"):
        build["num_points"] = config.data.num_points
    torch.manual_seed(0)
    model = pointcoc.create_model(name, num_classes=len(classes), **build)
    state = {"model": model.state_dict(), "ema": None, "config": config.to_dict(), "classes": classes}
    save_atomic({**state, "epoch": 1, "model_cfg": model.model_cfg.to_dict()}, path)
    return path


def image_checkpoint(path: Path) -> Path:
    return save_checkpoint(path, "coc_tiny", TINY_COC, IMAGE_CLASSES)


def point_checkpoint(path: Path, num_points: int = 256) -> Path:
    return save_checkpoint(
        path, "pointmlp_coc_elite", TINY_POINTS, POINT_CLASSES, f"data.num_points={num_points}"
    )


def sphere_ply(path: Path, n: int = 600, binary: bool = False) -> Path:
    """A bare vertex cloud on the unit sphere written as .ply (ascii or binary little-endian)."""
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(n, 3)).astype(np.float32)
    xyz /= np.linalg.norm(xyz, axis=1, keepdims=True)
    fmt = "binary_little_endian" if binary else "ascii"
    header = f"ply\nformat {fmt} 1.0\nelement vertex {n}\n" + "".join(f"property float {a}\n" for a in "xyz")
    header += "end_header\n"
    body = xyz.astype("<f4").tobytes() if binary else "".join(f"{a} {b} {c}\n" for a, b, c in xyz).encode()
    path.write_bytes(header.encode() + body)
    return path
