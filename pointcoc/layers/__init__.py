"""Building blocks shared by the point and image models."""

from .channels_last_norm import ChannelsLastGroupNorm
from .cluster_mixers import (
    ClusterMixer,
    GroupClusterMixer,
    LinearClusterMixer,
    RegionClusterMixer,
    SetClusterMixer,
    recording,
)

__all__ = [
    "ChannelsLastGroupNorm",
    "ClusterMixer",
    "GroupClusterMixer",
    "LinearClusterMixer",
    "RegionClusterMixer",
    "SetClusterMixer",
    "recording",
]
