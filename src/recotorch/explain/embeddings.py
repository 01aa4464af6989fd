"""Item biases, principal components of item vectors, and nearest items, as DataFrames."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
import torch

from recotorch.models.base import Estimator


def item_labels(model: Estimator) -> pl.Series:
    """A readable label per item index: the title where the data had one, else the raw id."""
    ids = model.items_.ids.cast(pl.Utf8)
    features = model.item_features_
    if features is None or "title" not in features.columns:
        return ids.alias("label")
    return features["title"].fill_null(ids).alias("label")


def item_counts(model: Estimator) -> torch.Tensor:
    """Training interactions per item, (n_items,)."""
    return torch.bincount(model.seen_.indices, minlength=model.n_items)


def _item_frame(model: Estimator, idx: torch.Tensor, **columns: Any) -> pl.DataFrame:
    return pl.DataFrame({
        "item": model.items_.ids.gather(idx.numpy()),
        "title": item_labels(model).gather(idx.numpy()),
        **columns,
        "ratings": item_counts(model)[idx].numpy(),
    })


def item_bias_table(model: Estimator, n: int = 10, min_count: int = 1) -> dict[str, pl.DataFrame]:
    """The `n` items with the lowest and highest learned bias ({"lowest": ..., "highest": ...}).

    A low bias means: even users who like this kind of film rate it lower than its latent
    factors predict — the course's "movies people like less than you'd expect".
    """
    if not model.supports("item_biases"):
        raise ValueError(f"{type(model).__name__} has no item biases")
    bias = model.item_biases().float()
    eligible = (item_counts(model) >= min_count).nonzero().flatten()
    order = eligible[torch.argsort(bias[eligible], stable=True)]
    low, high = order[:n], order.flip(0)[:n]
    return {"lowest": _item_frame(model, low, bias=bias[low].numpy()),
            "highest": _item_frame(model, high, bias=bias[high].numpy())}


@dataclass(frozen=True)
class PCAMap:
    """Items projected on the first principal components of their vectors.

    coords: one row per mapped item (item, title, ratings, pc1, pc2, ...).
    loadings: for each component, the items at its two ends (what the axis separates).
    genres: mean component score per genre, when the data had genres.
    explained: share of variance each component explains.
    """

    coords: pl.DataFrame
    loadings: pl.DataFrame
    genres: pl.DataFrame | None
    explained: list[float]


def pca_map(model: Estimator, n_components: int = 3, top_items: int | None = 1000, centre: bool = True,
            ends: int = 5) -> PCAMap:
    """PCA of item vectors, fitted on the `top_items` most-rated items (all when None)."""
    vectors = model.item_vectors()
    if vectors is None:
        raise ValueError(f"{type(model).__name__} has no item vectors to map")
    counts = item_counts(model)
    keep = torch.argsort(counts, descending=True, stable=True)
    keep = keep[: top_items or keep.numel()]
    x = vectors[keep].double()
    if centre:
        x = x - x.mean(0, keepdim=True)
    _, s, v = torch.linalg.svd(x, full_matrices=False)
    k = min(n_components, v.shape[0])
    proj = (x @ v[:k].T).float()  # (n, k)
    variance = s**2
    explained = (variance[:k] / variance.sum()).tolist()
    pcs = {f"pc{c + 1}": proj[:, c].numpy() for c in range(k)}
    coords = _item_frame(model, keep, **pcs)
    rows = []
    for c in range(k):
        order = torch.argsort(proj[:, c], stable=True)
        for side, picks in (("negative", order[:ends]), ("positive", order.flip(0)[:ends])):
            for j in picks.tolist():
                rows.append({"component": c + 1, "end": side, "title": coords["title"][j],
                             "score": float(proj[j, c])})
    return PCAMap(coords, pl.DataFrame(rows), _genre_means(model, keep, proj), explained)


def _genre_means(model: Estimator, keep: torch.Tensor, proj: torch.Tensor) -> pl.DataFrame | None:
    features = model.item_features_
    if features is None or "genres" not in features.columns:
        return None
    frame = pl.DataFrame({"genres": features["genres"].gather(keep.numpy()),
                          **{f"pc{c + 1}": proj[:, c].numpy() for c in range(proj.shape[1])}})
    pcs = [f"pc{c + 1}" for c in range(proj.shape[1])]
    return (frame.explode("genres").drop_nulls("genres")
            .group_by("genres").agg(pl.len().alias("items"), *[pl.col(p).mean() for p in pcs])
            .sort("pc1").rename({"genres": "genre"}))


def nearest_items(model: Estimator, item_id: Any, k: int = 10) -> pl.DataFrame:
    """Items closest to `item_id` by cosine similarity of item vectors, with titles and scores."""
    recs = model.similar_items([item_id], k=k)
    idx = recs.item_idx[0]
    idx = idx[idx >= 0]
    return _item_frame(model, idx, similarity=recs.scores[0, : idx.numel()].numpy())
