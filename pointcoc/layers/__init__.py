"""Building blocks shared by the point and image models."""

from .cluster_mixers import ClusterMixer, GroupClusterMixer, RegionClusterMixer, SetClusterMixer, recording

__all__ = ["ClusterMixer", "GroupClusterMixer", "RegionClusterMixer", "SetClusterMixer", "recording"]
