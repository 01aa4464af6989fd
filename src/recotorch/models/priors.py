"""Fold-in of rating factor models (`mf`, `mf_coldstart`, `hybrid`): the ridge solve and its priors.

With the item factors q_i and biases b_i frozen, the user's ratings are mapped through the inverse
of the model's sigmoid, z = logit((r - lo) / (hi - lo)) - b_i, and [p, b] solves
min |A [p, b] - z|^2 + (x - mu)^T diag(lam / var) (x - mu), A_i = [q_i, 1], with lam = `reg`
(default `FOLD_IN_REG`) for the factors and `reg_bias` (default `FOLD_IN_REG_BIAS`) for the bias.
The prior mean `mu` and variances `var` are those of the trained users' [p_u, b_u], each user
weighted by their number of ratings (the ratings still to predict come mostly from users who rate
a lot), so a user with one rating starts from the average user rather than from zero. Given the
new user's age / gender / occupation and a model that kept its training users' features, `mu`
becomes a ridge regression (`DEMOGRAPHIC_REG`) of [p_u, b_u] on those features and `var` its
residual variance. See docs/incremental.md for what this was chosen against.
"""

from __future__ import annotations

import weakref
from typing import Any

import polars as pl
import torch

from recotorch.core.maths import ridge_fold_in, squash
from recotorch.data.demographics import DEMOGRAPHIC_GROUPS, demographic_design

__all__ = ["DEMOGRAPHIC_REG", "FOLD_IN_REG", "FOLD_IN_REG_BIAS", "DemographicPrior", "FactorFoldIn",
           "fit_demographic_prior", "rating_weights", "user_prior"]

FOLD_IN_REG = 0.2  # fold-in prior strength of a new user's factors, in units of the trained users' variance
FOLD_IN_REG_BIAS = 0.3  # ... and of a new user's bias
DEMOGRAPHIC_REG = 100.0  # ridge of the regression of trained users' [p_u, b_u] on their features

DemographicPrior = tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]], torch.Tensor]


def rating_weights(row_lengths: torch.Tensor) -> torch.Tensor:
    """Each trained user's share of the ratings (n_users,), at least one rating each."""
    w = row_lengths.float().clamp(min=1.0)
    return w / w.sum()


def user_prior(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (D,), variances (D,)) of the rows x (n, D), weighted by w (n,) summing to 1."""
    mu = w @ x
    var = w @ (x - mu) ** 2 if x.shape[0] > 1 else torch.ones(x.shape[1])
    return mu, var.clamp(min=1e-6)


def fit_demographic_prior(x: torch.Tensor, w: torch.Tensor, frame: pl.DataFrame | None) -> DemographicPrior | None:
    """(mean (D,), coefficients (G, D), levels, residual variances (D,)) of the weighted ridge regression
    of the rows x (n, D) on the one-hot features of `frame` (n rows); None without usable features."""
    if frame is None or len(frame) != x.shape[0] or not set(DEMOGRAPHIC_GROUPS) & set(frame.columns):
        return None
    g, levels = demographic_design(frame)
    if not levels:
        return None
    mu = w @ x
    gw = g * w[:, None]
    coef = torch.linalg.solve(g.T @ gw + DEMOGRAPHIC_REG / x.shape[0] * torch.eye(g.shape[1]), gw.T @ (x - mu))
    var = w @ (x - mu - g @ coef) ** 2
    return mu, coef, levels, var.clamp(min=1e-6)


_PRIORS: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], DemographicPrior | None]] = weakref.WeakKeyDictionary()


class FactorFoldIn:
    """Mixin of rating factor models: fold-in by `core.ridge_fold_in` with the trained users' prior.

    The model provides `item_vectors`, `item_biases`, `user_vectors`, `user_biases`, `seen_`,
    `user_features_`, `rating_range_` and `module_`; `fold_in_strengths()` may be overridden
    (`ColdStartMF` returns its learnt ones). The representation is [p_u, b_u], D = dim + 1.
    """

    rating_range_: tuple[float, float] | None

    def fold_in_strengths(self) -> tuple[float, float]:
        """Default prior strengths (factors, bias) of the fold-in."""
        return (FOLD_IN_REG, FOLD_IN_REG_BIAS)

    def trained_user_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(the trained users' [p_u, b_u] (n_users, d+1), weights (n_users,) = share of the ratings)."""
        x = torch.cat([self.user_vectors().float(), self.user_biases().detach().cpu().float()[:, None]], 1)
        return x, rating_weights(self.seen_.row_lengths())

    def population_prior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean (d+1,), variances (d+1,)) of the trained users' [p_u, b_u], weighted by their ratings."""
        return user_prior(*self.trained_user_rows())

    def demographic_prior(self) -> DemographicPrior | None:
        """`fit_demographic_prior` of the trained users, remembered while the module, features and
        seen sets stay the same (held beside the model, never written into it)."""
        module = self.module_
        key = (id(module), tuple(t._version for t in module.parameters()), id(self.user_features_), id(self.seen_))
        cached = _PRIORS.get(self)
        if cached is None or cached[0] != key:
            cached = (key, fit_demographic_prior(*self.trained_user_rows(), self.user_features_))
            _PRIORS[self] = cached
        return cached[1]

    def prior_for(self, batch: int, user_features: pl.DataFrame | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(prior means (batch, d+1), variances (d+1,)): demographic when features are given and usable."""
        found = self.demographic_prior() if user_features is not None else None
        if found is None:
            mu, var = self.population_prior()
            return mu.expand(batch, -1), var
        mu, coef, levels, var = found
        if len(user_features) != batch:
            raise ValueError(f"got {len(user_features)} rows of user features for {batch} users")
        return mu + demographic_design(user_features, levels)[0] @ coef, var

    def fold_in(self, item_idx: torch.Tensor, values: torch.Tensor | None = None, *, reg: float | None = None,
                reg_bias: float | None = None, user_features: pl.DataFrame | None = None) -> torch.Tensor:
        if values is None:
            raise ValueError(f"{type(self).__name__} predicts ratings: give the new user's ratings")
        item_idx = item_idx.long()
        mask = item_idx >= 0
        safe = item_idx.clamp(min=0)
        r = torch.where(mask, values.float(), torch.zeros(()))
        q, b = self.item_vectors().float(), self.item_biases().float()
        mu, var = self.prior_for(item_idx.shape[0], user_features)
        own_reg, own_bias = self.fold_in_strengths()
        lam_bias = (own_bias if reg is None else reg) if reg_bias is None else reg_bias
        lam = torch.full((q.shape[1] + 1,), own_reg if reg is None else reg)
        lam[-1] = lam_bias
        return ridge_fold_in(q, b, safe, r, mask, mu, lam / var, self.rating_range_)

    def score_new_users(self, vectors: torch.Tensor) -> torch.Tensor:
        q, b = self.item_vectors().float(), self.item_biases().float()
        with torch.no_grad():
            return squash(vectors[:, :-1] @ q.T + vectors[:, -1:] + b[None, :], self.rating_range_)

    def score_new_user_pairs(self, vectors: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        q, b = self.item_vectors().float(), self.item_biases().float()
        raw = torch.einsum("bd,bmd->bm", vectors[:, :-1], q[item_idx]) + vectors[:, -1:] + b[item_idx]
        return squash(raw, self.rating_range_)
