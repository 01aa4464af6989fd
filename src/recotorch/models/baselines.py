"""Baselines every report shows beside a model: global mean and user/item biases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
import torch

from recotorch.data.interactions import Interactions
from recotorch.models.base import Estimator, NewRows, register
from recotorch.train.config import Params, log_uniform, param


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
    CAPABILITIES = frozenset({"fold_in", "update"})

    @dataclass
    class Config(Params):
        reg_user: float = param(15.0, ge=0, help="pseudo-count pulling user biases to zero", tune=log_uniform(0.1, 100))
        reg_item: float = param(10.0, ge=0, help="pseudo-count pulling item biases to zero", tune=log_uniform(0.1, 100))
        n_iters: int = param(10, ge=1, help="alternating passes")
        use_users: bool = param(True, help="fit user biases")
        use_items: bool = param(True, help="fit item biases")

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

    # ---- capabilities -----------------------------------------------------------------
    def cold_scores(self) -> torch.Tensor:
        """mean + b_i, clamped to the training ratings' range."""
        return (self.mean_ + self.item_bias_.float()).clamp(*self.range_)

    def fold_in(self, item_idx: torch.Tensor, values: torch.Tensor | None = None, *, reg: float | None = None,
                reg_bias: float | None = None, user_features: pl.DataFrame | None = None) -> torch.Tensor:
        """[b_u] (B, 1): the shrunken mean residual r - mean - b_i (`reg` defaults to `reg_user`)."""
        if values is None:
            raise ValueError(f"{type(self).__name__} predicts ratings: give the new user's ratings")
        item_idx = item_idx.long()
        mask = item_idx >= 0
        if not self.use_users:  # e.g. GlobalMean: the model has no user term to fill
            return torch.zeros(item_idx.shape[0], 1)
        safe, n = item_idx.clamp(min=0), mask.sum(1).float()
        r = torch.where(mask, values.float(), torch.zeros(()))
        resid = (r - self.mean_ - self.item_bias_[safe]) * mask  # (B, L)
        return (resid.sum(1) / (n + (self.reg_user if reg is None else reg)))[:, None]

    def score_new_users(self, vectors: torch.Tensor) -> torch.Tensor:
        return (self.mean_ + vectors + self.item_bias_[None, :]).clamp(*self.range_)

    def score_new_user_pairs(self, vectors: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        return (self.mean_ + vectors + self.item_bias_[item_idx]).clamp(*self.range_)

    def update(self, rows: NewRows, *, reg: float | None = None, epochs: int = 0, lr: float | None = None) -> None:
        """b <- (b_old (n_old + reg) + sum of new residuals) / (n_old + n_new + reg), items then users."""
        u, i, r, old_seen = rows.user_idx, rows.item_idx, rows.ratings(self), rows.old_seen
        n_u_old = torch.cat([old_seen.row_lengths().float(), torch.zeros(self.n_users - rows.old_users)])
        n_i_old = torch.zeros(self.n_items)
        n_i_old[: rows.old_items] = torch.bincount(old_seen.indices, minlength=rows.old_items).float()
        ub = torch.cat([self.user_bias_, torch.zeros(self.n_users - rows.old_users)])
        ib = torch.cat([self.item_bias_, torch.zeros(self.n_items - rows.old_items)])
        if self.use_items:
            resid = torch.bincount(i, r - self.mean_ - ub[u], self.n_items).float()
            ib = (ib * (n_i_old + self.reg_item) + resid) / (n_i_old + torch.bincount(i, minlength=self.n_items)
                                                             + self.reg_item)
        if self.use_users:
            resid = torch.bincount(u, r - self.mean_ - ib[i], self.n_users).float()
            ub = (ub * (n_u_old + self.reg_user) + resid) / (n_u_old + torch.bincount(u, minlength=self.n_users)
                                                             + self.reg_user)
        self.user_bias_, self.item_bias_ = ub.float(), ib.float()

    # ---- files --------------------------------------------------------------------------
    def _fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return ({"user_bias": self.user_bias_, "item_bias": self.item_bias_},
                {"mean": self.mean_, "range": list(self.range_)})

    def _restore(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        self.user_bias_, self.item_bias_ = tensors["user_bias"], tensors["item_bias"]
        self.mean_, self.range_ = extra["mean"], tuple(extra["range"])


@register
class GlobalMean(BiasBaseline):
    """Predicts the mean training rating for every pair."""

    name = "mean"
    TEST_PARAMS: ClassVar[dict[str, Any]] = {}

    reg_user, reg_item, n_iters, use_users, use_items = 15.0, 10.0, 10, False, False

    @dataclass
    class Config(Params):
        """No hyper-parameters."""


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
