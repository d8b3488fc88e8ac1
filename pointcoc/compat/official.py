"""Official Context-Cluster / pointMLP-pytorch constructors mapped onto pointcoc models."""

from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn

from ..layers import RegionClusterMixer
from ..models.context_cluster import ContextCluster
from ..models.pointmlp import PointMLP
from ..models.pointmlp import convert_official_state_dict as convert_pointmlp
from ..utils.serialization import StateDict, load_state_dict_strict


def _cluster(kwargs: dict[str, Any]) -> tuple[nn.Module, Callable[[StateDict], StateDict]]:
    kwargs = dict(kwargs)
    if kwargs.pop("return_center", False):
        raise ValueError("official Cluster(return_center=True) is deprecated upstream and not supported")
    return RegionClusterMixer(**kwargs), dict


def _context_cluster(kwargs: dict[str, Any]) -> tuple[nn.Module, Callable[[StateDict], StateDict]]:
    kwargs = dict(kwargs)
    # The official default norm is BatchNorm2d; every published variant passes its GroupNorm(1, C).
    norm = kwargs.pop("norm_layer", "torch.nn.modules.batchnorm.BatchNorm2d")
    if norm != "models.context_cluster.GroupNorm":
        raise ValueError(
            f"official ContextCluster norm_layer={norm!r} is not supported "
            f"(only models.context_cluster.GroupNorm)"
        )
    act = kwargs.pop("act_layer", "torch.nn.modules.activation.GELU")
    if act != "torch.nn.modules.activation.GELU":
        raise ValueError(f"official ContextCluster act_layer={act!r} is not supported (only torch.nn.GELU)")
    for key in ("init_cfg", "pretrained"):  # mmdet/mmseg checkpoint hooks: load with load_official_checkpoint
        if kwargs.pop(key, None) is not None:
            raise ValueError(f"official ContextCluster {key} is not supported; use load_official_checkpoint")
    return ContextCluster(**kwargs), dict


_POINT_ARGS = {"points": "num_points", "class_num": "num_classes"}


def _point_model(
    cluster: bool,
) -> Callable[[dict[str, Any]], tuple[nn.Module, Callable[[StateDict], StateDict]]]:
    def build(kwargs: dict[str, Any]) -> tuple[nn.Module, Callable[[StateDict], StateDict]]:
        kwargs = {_POINT_ARGS.get(k, k): v for k, v in kwargs.items()}
        if kwargs.pop("groups", 1) != 1:
            raise ValueError("official PointMLP with groups > 1 (grouped convolutions) is not supported")
        # The official models sampled anchors with pointnet2_ops' CUDA kernel: reproduce it, skip included.
        model = PointMLP(**kwargs, cluster=cluster, input_layout="BCN", fps_skip_near_origin=True)
        return model, lambda sd: convert_pointmlp(sd, cluster)

    return build


OFFICIAL_BUILDERS: dict[
    str, Callable[[dict[str, Any]], tuple[nn.Module, Callable[[StateDict], StateDict]]]
] = {
    "models.context_cluster.Cluster": _cluster,
    "models.context_cluster.ContextCluster": _context_cluster,
    "pointcloud.models.contextcluster.Model": _point_model(cluster=True),
    "classification_ScanObjectNN.models.pointmlp.Model": _point_model(cluster=False),
    "classification_ModelNet40.models.pointmlp.Model": _point_model(cluster=False),
}


def official_model(builder: str, kwargs: dict[str, Any], state_dict: StateDict | None = None) -> nn.Module:
    """Our model equivalent to ``builder(**kwargs)`` of the official code, ``state_dict`` loaded strictly.

    The model is returned in eval mode and takes inputs in the official layout
    (points ``[B, 3, N]``, images ``[B, 3, H, W]``); point models sample their anchors as pointnet2_ops'
    CUDA kernel (``fps_skip_near_origin=True``), which the official training and evaluation used.
    """
    if builder not in OFFICIAL_BUILDERS:
        raise ValueError(
            f"unknown official builder {builder!r}; supported: {', '.join(sorted(OFFICIAL_BUILDERS))}"
        )
    try:
        model, convert = OFFICIAL_BUILDERS[builder](kwargs)
    except TypeError as err:  # an official keyword we do not know
        raise ValueError(f"cannot build {builder} from kwargs {sorted(kwargs)}: {err}") from None
    if state_dict is not None:
        load_state_dict_strict(model, convert(state_dict), source=builder)
    return model.eval()
