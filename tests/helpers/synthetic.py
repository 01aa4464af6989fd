"""A matrix-factorisation model made directly from random tensors: large catalogues for tests and benchmarks.

Real embeddings are not i.i.d. noise: items group around tastes (genres, audiences). With
`clusters > 0` vectors are drawn around `clusters` random centres, which is the structure an IVF
index exploits; `clusters=0` gives i.i.d. Gaussian vectors, the worst case for any ANN index.
"""

from __future__ import annotations

import numpy as np
import torch

from recotorch.data.interactions import build_csr
from recotorch.data.vocab import Vocab
from recotorch.models.mf import DotBias, MatrixFactorization
from recotorch.train.trainer import History


def _vectors(rng: np.random.Generator, n: int, dim: int, centres: np.ndarray | None, scale: float) -> np.ndarray:
    if centres is None:
        return (rng.standard_normal((n, dim), dtype=np.float32) * scale).astype(np.float32)
    which = rng.integers(0, len(centres), n)
    noise = rng.standard_normal((n, dim), dtype=np.float32) * 0.5
    return ((centres[which] + noise) * scale).astype(np.float32)


def synthetic_mf(n_users: int, n_items: int, dim: int = 32, *, clusters: int = 256, seen_per_user: int = 20,
                 seed: int = 0) -> MatrixFactorization:
    """A fitted-looking `MatrixFactorization`: integer user ids 1..n_users, item ids "sku-0000001"...

    Each user has `seen_per_user` random training items (so seen-item exclusion is exercised);
    scores are squash(<p_u, q_i> + b_u + b_i) onto (0, 5.5) like a model fitted on 1-5 stars.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32) if clusters > 0 else None
    scale = 1.0 / np.sqrt(dim)
    model = MatrixFactorization(dim=dim)
    model.users_ = Vocab(np.arange(1, n_users + 1, dtype=np.int64))
    model.items_ = Vocab([f"sku-{i:07d}" for i in range(1, n_items + 1)])
    model.rating_range_ = (0.0, 5.5)
    model.baseline_ = (3.5, torch.zeros(n_users), torch.zeros(n_items))
    module = DotBias(n_users, n_items, dim, model.rating_range_)
    with torch.no_grad():
        module.user_factors.weight.copy_(torch.from_numpy(_vectors(rng, n_users, dim, centres, 1.0)))
        module.item_factors.weight.copy_(torch.from_numpy(_vectors(rng, n_items, dim, centres, scale)))
        module.user_bias.weight.copy_(torch.from_numpy(rng.normal(0, 0.1, (n_users, 1)).astype(np.float32)))
        module.item_bias.weight.copy_(torch.from_numpy(rng.normal(0, 0.1, (n_items, 1)).astype(np.float32)))
    model.module_ = module.eval()
    model.history_ = History.from_dict({"epochs": [], "step_losses": [], "best_epoch": None})
    seen = min(seen_per_user, n_items)
    rows = torch.arange(n_users).repeat_interleave(seen)
    cols = torch.from_numpy(np.concatenate([rng.choice(n_items, seen, replace=False) for _ in range(n_users)]))
    model.seen_ = build_csr(rows, cols.to(torch.int64), n_users)
    model.item_features_ = None
    return model


GENRES = ("Action", "Comedy", "Drama", "Horror", "Sci-Fi", "Romance")


def toy_catalogue(n_users: int = 60, n_items: int = 80, per_user: int = 15, seed: int = 0):
    """Ratings with a planted taste structure and MovieLens-like item features (id, title, year, genres).

    Each user likes one genre (ratings 4-5) and is lukewarm elsewhere (1-3); item ids are ints
    1..n_items titled "Movie 7 (Comedy)". Returns `Interactions`, ready to `fit`.
    """
    import polars as pl

    from recotorch.data.interactions import Interactions

    rng = np.random.default_rng(seed)
    item_genre = rng.integers(0, len(GENRES), n_items)
    user_genre = rng.integers(0, len(GENRES), n_users)
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, per_user, replace=False).tolist():
            liked = item_genre[i] == user_genre[u]
            rating = int(rng.integers(4, 6)) if liked else int(rng.integers(1, 4))
            rows.append((u + 1, i + 1, float(rating), 880_000_000 + len(rows)))
    frame = pl.DataFrame(rows, schema={"user": pl.Int64, "item": pl.Int64, "rating": pl.Float64,
                                       "timestamp": pl.Int64}, orient="row")
    features = pl.DataFrame({
        "id": np.arange(1, n_items + 1),
        "title": [f"Movie {i + 1} ({GENRES[g]})" for i, g in enumerate(item_genre.tolist())],
        "year": (1980 + np.arange(n_items) % 40).tolist(),
        "genres": [[GENRES[g]] for g in item_genre.tolist()],
    })
    return Interactions.from_frame(frame).with_features(item_features=features)
