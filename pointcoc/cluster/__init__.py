"""The context-cluster operator and the ways of forming point sets and centers for it."""

from .op import (
    AGGREGATIONS,
    Aggregation,
    ClusterCenters,
    ClusterResult,
    aggregate_clusters,
    context_cluster,
    cosine_similarity_to_centers,
    dispatch_to_points,
)
from .regions import (
    fold_regions,
    grid_centers,
    grid_to_points,
    merge_region_sets,
    padded_to_folds,
    set_centers,
    set_pool_matrix,
    split_region_sets,
    unfold_regions,
)

__all__ = [
    "AGGREGATIONS",
    "Aggregation",
    "ClusterCenters",
    "ClusterResult",
    "aggregate_clusters",
    "context_cluster",
    "cosine_similarity_to_centers",
    "dispatch_to_points",
    "fold_regions",
    "grid_centers",
    "grid_to_points",
    "merge_region_sets",
    "padded_to_folds",
    "set_centers",
    "set_pool_matrix",
    "split_region_sets",
    "unfold_regions",
]
