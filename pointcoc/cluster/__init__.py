"""The context-cluster operator and the ways of forming point sets and centers for it."""

from .op import AGGREGATIONS, Aggregation, ClusterResult, context_cluster, cosine_similarity_to_centers
from .regions import (
    fold_regions,
    grid_centers,
    grid_to_points,
    padded_to_folds,
    points_to_grid,
    unfold_regions,
)

__all__ = [
    "AGGREGATIONS",
    "Aggregation",
    "ClusterResult",
    "context_cluster",
    "cosine_similarity_to_centers",
    "fold_regions",
    "grid_centers",
    "grid_to_points",
    "padded_to_folds",
    "points_to_grid",
    "unfold_regions",
]
