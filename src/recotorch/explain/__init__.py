"""Understanding a trained model: biases, embedding maps, neighbours, user groups."""

from recotorch.explain.clusters import ClusterProfile, kmeans, user_clusters
from recotorch.explain.embeddings import PCAMap, item_bias_table, item_labels, nearest_items, pca_map
from recotorch.explain.plots import plot_pca_map

__all__ = [
    "ClusterProfile",
    "PCAMap",
    "item_bias_table",
    "item_labels",
    "kmeans",
    "nearest_items",
    "pca_map",
    "plot_pca_map",
    "user_clusters",
]
