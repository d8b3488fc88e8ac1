"""Point-set ops: farthest point sampling, k nearest neighbours and gathering by index.

Each op has a pure-torch path (CPU and CUDA) and uses pytorch3d automatically when it imports
(``backend="auto"``); FPS on CUDA runs as one Triton kernel when triton imports
(:mod:`pointcoc.ops.triton_fps`). All paths are checked against the naive loops and the official FPS
loop in :mod:`pointcoc.ops.reference`.
"""

from .gather import gather_points, gather_points_shifted, gather_points_sum
from .knn import knn_points, square_distance
from .sampling import farthest_point_sample

__all__ = [
    "farthest_point_sample",
    "gather_points",
    "gather_points_shifted",
    "gather_points_sum",
    "knn_points",
    "square_distance",
]
