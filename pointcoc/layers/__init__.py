"""Building blocks shared by the point and image models."""

from .cluster_mixers import (
    ClusterMixer,
    GroupClusterMixer,
    LinearClusterMixer,
    RegionClusterMixer,
    SetClusterMixer,
    recording,
)

__all__ = [
    "ClusterMixer",
    "GroupClusterMixer",
    "LinearClusterMixer",
    "RegionClusterMixer",
    "SetClusterMixer",
    "recording",
]
