"""Evaluation: rating errors and full-catalogue ranking metrics."""

from recotorch.evaluate.metrics import (
    evaluate_ranking,
    mae,
    ranking_metrics,
    ranking_metrics_per_user,
    rmse,
    top_k,
)

__all__ = [
    "evaluate_ranking",
    "mae",
    "ranking_metrics",
    "ranking_metrics_per_user",
    "rmse",
    "top_k",
]
