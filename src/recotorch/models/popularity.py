"""The non-personalised baseline of top-N recommendation: rank items by training popularity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
import torch

from recotorch.data.interactions import Interactions
from recotorch.models.base import Estimator, NewRows, register
from recotorch.train.config import Params, param


@register
class MostPopular(Estimator):
    """score(u, i) = number of training interactions with item i (or their summed weight).

    Every user gets the same list (minus what they have seen). `use_weights=True` sums the
    `rating` column (e.g. play counts from `to_implicit(weights="count")`) instead of counting
    rows. Unknown users in `predict` get the item's popularity too; unknown items get 0.

    >>> MostPopular().fit(train).recommend([196], k=10)
    """

    name = "pop"
    task = "ranking"
    CAPABILITIES = frozenset({"fold_in", "update"})

    @dataclass
    class Config(Params):
        use_weights: bool = param(False, help="sum the rating column instead of counting rows")

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        weights = train.rating.float() if self.use_weights and train.rating is not None else None
        self.popularity_ = torch.bincount(train.item_idx, weights, minlength=train.n_items).float()

    def score(self, user_idx: torch.Tensor, item_idx: torch.Tensor | None = None) -> torch.Tensor:
        if item_idx is None:
            return self.popularity_.expand(user_idx.numel(), -1).clone()
        return self.popularity_[item_idx]

    def _fallback(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(item_idx.numel())
        known = item_idx >= 0
        out[known] = self.popularity_[item_idx[known]]
        return out

    def fold_in(self, item_idx: torch.Tensor, values: torch.Tensor | None = None, *, reg: float | None = None,
                reg_bias: float | None = None, user_features: pl.DataFrame | None = None) -> torch.Tensor:
        """Nothing to fold in: every user gets the same scores (an empty representation, D = 0)."""
        return torch.zeros(item_idx.shape[0], 0)

    def score_new_users(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.popularity_.expand(vectors.shape[0], -1).clone()

    def update(self, rows: NewRows, *, reg: float | None = None, epochs: int = 0, lr: float | None = None) -> None:
        """Counts (or weights) of the new rows added."""
        i, r = rows.item_idx, rows.rating
        weights = r if self.use_weights and r is not None else torch.ones(i.numel())
        grown = torch.zeros(self.n_items)
        grown[: rows.old_items] = self.popularity_
        self.popularity_ = grown.index_add_(0, i, weights)

    def _fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {"popularity": self.popularity_}, {}

    def _restore(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        self.popularity_ = tensors["popularity"]
