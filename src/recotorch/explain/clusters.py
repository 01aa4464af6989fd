"""Groups of users with similar taste: k-means on user vectors, with a profile per group."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import torch

from recotorch.explain.embeddings import item_labels
from recotorch.models.base import Estimator


def kmeans(x: torch.Tensor, k: int, *, n_iter: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding; returns (labels (n,), centres (k, d))."""
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k must be between 1 and the number of points ({x.shape[0]}), got {k}")
    gen = torch.Generator().manual_seed(seed)
    x = x.float()
    centres = x[torch.randint(x.shape[0], (1,), generator=gen)]
    for _ in range(1, k):  # k-means++: next centre drawn by squared distance to the nearest one
        d2 = torch.cdist(x, centres).min(1).values ** 2
        probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1 / d2.numel())
        centres = torch.cat([centres, x[torch.multinomial(probs, 1, generator=gen)]])
    labels = torch.cdist(x, centres).argmin(1)
    for _ in range(n_iter):
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).unsqueeze(1)
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
        new = torch.cdist(x, centres).argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
    return labels, centres


@dataclass(frozen=True)
class ClusterProfile:
    """assignments: user -> cluster; profiles: per cluster size, top genres (by lift) and top items."""

    assignments: pl.DataFrame
    profiles: pl.DataFrame


def user_clusters(model: Estimator, k: int = 6, *, seed: int = 0, top: int = 3) -> ClusterProfile:
    """Cluster users on their (length-normalised) vectors and describe each cluster by what it watched."""
    if not model.supports("user_vectors"):
        raise ValueError(f"{type(model).__name__} has no user vectors to cluster")
    vectors = torch.nn.functional.normalize(model.user_vectors().float(), dim=1)
    labels, _ = kmeans(vectors, k, seed=seed)
    seen = model.seen_
    rows = torch.repeat_interleave(torch.arange(seen.n_rows), seen.row_lengths())
    item_cluster = labels[rows]  # cluster of the user behind each training interaction
    # (k, n_items) interaction counts per cluster; lift = cluster share / overall share
    counts = torch.zeros(k, model.n_items).index_put_((item_cluster, seen.indices),
                                                      torch.ones(seen.indices.numel()), accumulate=True)
    titles = item_labels(model)
    genres = _genre_lift(model, counts)
    profiles = []
    for c in range(k):
        size = int((labels == c).sum())
        top_items = torch.argsort(counts[c], descending=True, stable=True)[:top]
        profiles.append({
            "cluster": c, "users": size,
            "top_items": [titles[j] for j in top_items.tolist()],
            "top_genres": genres[c] if genres else [],
        })
    assignments = pl.DataFrame({"user": model.users_.ids, "cluster": labels.numpy()})
    return ClusterProfile(assignments, pl.DataFrame(profiles))


def _genre_lift(model: Estimator, counts: torch.Tensor, top: int = 3) -> list[list[str]] | None:
    features = model.item_features_
    if features is None or "genres" not in features.columns:
        return None
    exploded = pl.DataFrame({"item": range(model.n_items), "genre": features["genres"]}).explode("genre")
    exploded = exploded.drop_nulls("genre")
    names = sorted(exploded["genre"].unique().to_list())
    item_idx = torch.from_numpy(exploded["item"].to_numpy().astype("int64"))
    genre_idx = torch.from_numpy(exploded["genre"].cast(pl.Enum(names)).to_physical().to_numpy().astype("int64"))
    # (k, n_genres): interactions per cluster and genre
    per_genre = torch.zeros(counts.shape[0], len(names)).index_add_(1, genre_idx, counts[:, item_idx])
    share = per_genre / per_genre.sum(1, keepdim=True).clamp(min=1)
    overall = per_genre.sum(0) / per_genre.sum().clamp(min=1)
    lift = share / overall.clamp(min=1e-9)
    lift[:, per_genre.sum(0) < 50] = 0  # rare genres give noisy lifts
    return [[names[j] for j in torch.argsort(lift[c], descending=True)[:top].tolist()]
            for c in range(counts.shape[0])]
