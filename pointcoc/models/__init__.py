"""Model families; importing this package registers every variant."""

from . import pointmlp, pointnet, pointset_coc  # noqa: F401  (registers the point models)
from .capture import BlockClusters, StageClusters
from .context_cluster import ContextCluster  # (importing registers the image models)
from .model_cfg import ModelCfg
from .pointmlp import PointMLP
from .pointnet import PointNet
from .pointset_coc import PointSetCoC
from .registry import create_model, list_models, register_model

__all__ = [
    "BlockClusters",
    "ContextCluster",
    "ModelCfg",
    "PointMLP",
    "PointNet",
    "PointSetCoC",
    "StageClusters",
    "create_model",
    "list_models",
    "register_model",
]
