"""The non-personalised baseline of top-N recommendation: rank items by training popularity."""

from __future__ import annotations

from typing import Any

import torch

from recotorch.data.interactions import Interactions
from recotorch.models.base import Estimator, register


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

    def __init__(self, use_weights: bool = False) -> None:
        self.use_weights = use_weights

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

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {"popularity": self.popularity_}, {}

    def _restore(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        self.popularity_ = tensors["popularity"]
