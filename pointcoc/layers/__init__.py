"""Building blocks shared by the point and image models (they import only ``cluster`` and ``ops``)."""

from .activations import make_activation
from .channels_last_norm import ChannelsLastGroupNorm
from .classifier import classifier_head
from .cluster_mixers import (
    ClusterMixer,
    GroupClusterMixer,
    LinearClusterMixer,
    RegionClusterMixer,
    SetClusterMixer,
    recording,
)
from .drop_path import DropPath
from .input_transform import InputTransform
from .mlp import Mlp
from .per_stage import check_per_stage
from .pointwise import LinearBN, PointNorm, residual_unit, shared_mlp
from .pooling import max_values
from .pre_block import cluster_residual_unit

__all__ = [
    "ChannelsLastGroupNorm",
    "ClusterMixer",
    "DropPath",
    "GroupClusterMixer",
    "InputTransform",
    "LinearBN",
    "LinearClusterMixer",
    "Mlp",
    "PointNorm",
    "RegionClusterMixer",
    "SetClusterMixer",
    "check_per_stage",
    "classifier_head",
    "cluster_residual_unit",
    "make_activation",
    "max_values",
    "recording",
    "residual_unit",
    "shared_mlp",
]
