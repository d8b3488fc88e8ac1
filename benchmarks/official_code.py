"""Importing the official model files from checkouts of their repositories, for benchmarks and their tests.

``OfficialCode(root)`` loads, from a folder holding ``Context-Cluster/`` and ``pointMLP-pytorch/`` (clones of
ma-xu/Context-Cluster and ma-xu/pointMLP-pytorch, or ``../shared/reference`` here), the unmodified files
that define the official models, by path and under private module names, so that the two repositories'
``models`` packages do not collide and nothing is left importable as ``models`` afterwards.

Two of their imports cannot be satisfied on a CPU machine without extra builds; only here, and only while
the official files are imported, they are stood in for:

- ``timm`` (the image file's ``DropPath``, ``trunc_normal_``, ``to_2tuple``, ``register_model`` and the
  ImageNet mean/std), when timm itself cannot be imported; the stand-ins have timm's semantics.
- ``pointnet2_ops.pointnet2_utils.furthest_point_sample``, when pointnet2_ops (a CUDA extension) is not
  installed: the official pure-torch PointMLP loop
  (:func:`pointcoc.ops.reference.farthest_point_sample_official`, start fixed at point 0 like the CUDA
  kernel), returning int32 indices like the kernel.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn as nn

from pointcoc.ops.reference import farthest_point_sample_official

IMAGE_FILE = Path("Context-Cluster/models/context_cluster.py")
POINT_COC_FILE = Path("Context-Cluster/pointcloud/models/contextcluster.py")
POINTMLP_FILE = Path("pointMLP-pytorch/classification_ModelNet40/models/pointmlp.py")


class _DropPath(nn.Module):
    """timm's DropPath: drop whole residual branches per sample while training, rescale the rest."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        return x * x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep) / keep


def _to_2tuple(x):
    return tuple(x) if isinstance(x, (list, tuple)) else (x, x)


def _timm_stand_in() -> dict[str, types.ModuleType]:
    """Modules ``timm``, ``timm.data``, ``timm.models``, ``.layers``, ``.layers.helpers``, ``.registry``."""
    names = (
        "timm",
        "timm.data",
        "timm.models",
        "timm.models.layers",
        "timm.models.layers.helpers",
        "timm.models.registry",
    )
    mods = {name: types.ModuleType(name) for name in names}
    mods["timm.data"].IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
    mods["timm.data"].IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)
    layers = mods["timm.models.layers"]
    layers.DropPath = _DropPath
    layers.trunc_normal_ = lambda t, mean=0.0, std=1.0, a=-2.0, b=2.0: nn.init.trunc_normal_(
        t, mean, std, a, b
    )
    layers.helpers = mods["timm.models.layers.helpers"]
    layers.helpers.to_2tuple = _to_2tuple
    mods["timm.models.registry"].register_model = lambda fn: fn
    return mods


def _furthest_point_sample(xyz: torch.Tensor, npoint: int) -> torch.Tensor:
    return farthest_point_sample_official(xyz, npoint).int()


def _pointnet2_stand_in() -> dict[str, types.ModuleType]:
    package, utils = types.ModuleType("pointnet2_ops"), types.ModuleType("pointnet2_ops.pointnet2_utils")
    utils.furthest_point_sample = _furthest_point_sample
    package.pointnet2_utils = utils
    return {"pointnet2_ops": package, "pointnet2_ops.pointnet2_utils": utils}


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _timm_works() -> bool:
    # On these machines timm is installed but fails to import (torchvision's compiled ops).
    try:
        import timm.models.layers  # noqa: F401
    except Exception:
        return False
    return True


@contextlib.contextmanager
def _temporary_modules(modules: dict[str, types.ModuleType]) -> Iterator[None]:
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


class OfficialCode:
    """The official model modules under ``root``; ``stand_ins`` lists what was substituted."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        missing = [
            str(f) for f in (IMAGE_FILE, POINT_COC_FILE, POINTMLP_FILE) if not (self.root / f).is_file()
        ]
        if missing:
            raise FileNotFoundError(
                f"{self.root}: official files not found ({', '.join(missing)}); pass the folder holding "
                "clones of ma-xu/Context-Cluster and ma-xu/pointMLP-pytorch"
            )
        if not _importable("einops"):
            raise ModuleNotFoundError("the official code needs einops: pip install einops")
        substitutes: dict[str, types.ModuleType] = {}
        self.stand_ins: list[str] = []
        if not _timm_works():
            substitutes.update(_timm_stand_in())
            self.stand_ins.append(
                "timm (DropPath, trunc_normal_, to_2tuple, register_model, ImageNet mean/std)"
            )
        if not _importable("pointnet2_ops"):
            substitutes.update(_pointnet2_stand_in())
            self.stand_ins.append(
                "pointnet2_ops.pointnet2_utils.furthest_point_sample (official PointMLP torch loop, start 0)"
            )
        with _temporary_modules(substitutes), contextlib.redirect_stdout(io.StringIO()):
            # (the image file prints a notice about mmseg/mmdet on import)
            self.image = self._load("_official_context_cluster", IMAGE_FILE)
            self.pointmlp = self._load("_official_pointmlp", POINTMLP_FILE)
            self.point_coc = self._load_with_sibling("_official_point_coc", POINT_COC_FILE, "model_utils")

    def _load(self, name: str, path: Path, package: str | None = None) -> types.ModuleType:
        spec = importlib.util.spec_from_file_location(name, self.root / path)
        module = importlib.util.module_from_spec(spec)
        if package is not None:
            module.__package__ = package
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    def _load_with_sibling(self, name: str, path: Path, sibling: str) -> types.ModuleType:
        """A file that does ``from .sibling import ...``: load it inside a private package of its folder."""
        package = types.ModuleType(name + "_pkg")
        package.__path__ = [str((self.root / path).parent)]
        sys.modules[package.__name__] = package
        self._load(f"{package.__name__}.{sibling}", path.parent / f"{sibling}.py", package.__name__)
        return self._load(f"{package.__name__}.{path.stem}", path, package.__name__)
