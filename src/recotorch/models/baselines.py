"""Baselines every report shows beside a model: global mean and user/item biases."""

from __future__ import annotations

from typing import Any

import torch

from recotorch.data.interactions import Interactions
from recotorch.models.base import Estimator, register


@register
class BiasBaseline(Estimator):
    """rating ~ mean + user bias + item bias, fitted by regularised alternating averages.

    Each pass sets item biases to the shrunken mean residual of their ratings, then user biases
    likewise (`reg_item`, `reg_user` act as pseudo-counts pulling rarely seen ids to zero).
    With `use_users=False, use_items=False` it is the global mean.

    >>> BiasBaseline().fit(train).predict(["196"], ["242"]).values
    """

    name = "bias"
    task = "rating"

    def __init__(self, reg_user: float = 15.0, reg_item: float = 10.0, n_iters: int = 10,
                 use_users: bool = True, use_items: bool = True) -> None:
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.n_iters = n_iters
        self.use_users = use_users
        self.use_items = use_items

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        if train.rating is None:
            raise ValueError(f"{type(self).__name__} needs ratings; these interactions have none")
        self.mean_, self.user_bias_, self.item_bias_ = fit_biases(
            train, self.reg_user, self.reg_item, self.n_iters, self.use_users, self.use_items)
        self.range_ = (float(train.rating.min()), float(train.rating.max()))

    def score(self, user_idx: torch.Tensor, item_idx: torch.Tensor | None = None) -> torch.Tensor:
        if item_idx is None:
            raw = self.mean_ + self.user_bias_[user_idx, None] + self.item_bias_[None, :]
        else:
            raw = self.mean_ + self.user_bias_[user_idx] + self.item_bias_[item_idx]
        return raw.clamp(*self.range_)

    def _fallback(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        return partial_bias(self.mean_, self.user_bias_, self.item_bias_, user_idx, item_idx).clamp(*self.range_)

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return ({"user_bias": self.user_bias_, "item_bias": self.item_bias_},
                {"mean": self.mean_, "range": list(self.range_)})

    def _restore(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        self.user_bias_, self.item_bias_ = tensors["user_bias"], tensors["item_bias"]
        self.mean_, self.range_ = extra["mean"], tuple(extra["range"])


@register
class GlobalMean(BiasBaseline):
    """Predicts the mean training rating for every pair."""

    name = "mean"

    def __init__(self) -> None:
        super().__init__(use_users=False, use_items=False)

    def get_params(self) -> dict[str, Any]:
        return {}


def fit_biases(train: Interactions, reg_user: float, reg_item: float, n_iters: int,
               use_users: bool = True, use_items: bool = True) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(mean, user_bias (n_users,), item_bias (n_items,)) by alternating shrunken averages."""
    r = train.rating.double()  # type: ignore[union-attr]
    u, i = train.user_idx, train.item_idx
    mean = float(r.mean())
    user_bias = torch.zeros(train.n_users, dtype=torch.float64)
    item_bias = torch.zeros(train.n_items, dtype=torch.float64)
    n_u = torch.bincount(u, minlength=train.n_users).double()
    n_i = torch.bincount(i, minlength=train.n_items).double()
    for _ in range(n_iters if use_users and use_items else 1):
        if use_items:
            item_bias = torch.bincount(i, r - mean - user_bias[u], train.n_items) / (n_i + reg_item)
        if use_users:
            user_bias = torch.bincount(u, r - mean - item_bias[i], train.n_users) / (n_u + reg_user)
    return mean, user_bias.float(), item_bias.float()


def partial_bias(mean: float, user_bias: torch.Tensor, item_bias: torch.Tensor,
                 user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
    """mean + the biases of whichever ids are known (index -1 = unknown, contributes 0)."""
    out = torch.full((user_idx.numel(),), mean)
    known_u, known_i = user_idx >= 0, item_idx >= 0
    out[known_u] += user_bias[user_idx[known_u]]
    out[known_i] += item_bias[item_idx[known_i]]
    return out
