"""Popularity for users with no history: over all training users, or among those sharing demographics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl
import torch

from recotorch.data.demographics import DEMOGRAPHIC_GROUPS, age_band, age_band_expr
from recotorch.models.base import Estimator

__all__ = ["demographic_popularity", "item_counts"]


def item_counts(model: Estimator, users: torch.Tensor | None = None) -> torch.Tensor:
    """Training users per item (n_items,), over all users or the given ones."""
    seen = model.seen_
    if users is None:
        cols = seen.indices
    else:
        lengths = seen.row_lengths()[users]
        starts = seen.indptr[users]
        offsets = torch.repeat_interleave(starts - (torch.cumsum(lengths, 0) - lengths), lengths)
        cols = seen.indices[torch.arange(int(lengths.sum())) + offsets]
    return torch.bincount(cols, minlength=model.n_items).float()


def demographic_popularity(model: Estimator, user_features: Mapping[str, Any], *,
                           min_users: int = 20) -> torch.Tensor | None:
    """Item counts among training users sharing the new user's age band, gender and occupation.

    If fewer than `min_users` match, occupation is dropped, then age band, then gender. Global
    popularity breaks ties. None when the model has no user features or nothing matches.
    """
    frame: pl.DataFrame | None = model.user_features_
    if frame is None or len(frame) != model.n_users:
        return None
    wanted = {k: v for k, v in user_features.items() if k in DEMOGRAPHIC_GROUPS and v is not None
              and k in frame.columns}
    if "age" in wanted:
        wanted["age"] = age_band(int(wanted["age"]))
        frame = frame.with_columns(age_band_expr(pl.col("age")).alias("age"))
    for drop in ((), ("occupation",), ("occupation", "age"), ("occupation", "age", "gender")):
        keys = [k for k in wanted if k not in drop]
        if not keys:
            return None
        match = np.ones(len(frame), dtype=bool)
        for key in keys:
            match &= (frame[key] == wanted[key]).fill_null(False).to_numpy()
        if match.sum() >= min_users:
            users = torch.from_numpy(np.flatnonzero(match))
            counts = item_counts(model, users)
            return counts + item_counts(model, None) / (model.n_users + 1.0)  # ties: global popularity
    return None
