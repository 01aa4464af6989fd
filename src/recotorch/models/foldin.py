"""New users without retraining: fold a user's history into a fitted model whose item side stays frozen.

How each kind of model answers (`D` is the width of the returned user representation):

| model | representation | fold-in |
|---|---|---|
| rating factor models (`mf`, `hybrid`) | `[p_u, b_u]`, D = dim + 1 | ridge regression in closed form on logit targets |
| `als` | `x_u`, D = dim | the ALS user solve with confidences 1 + alpha r |
| `bias`, `mean` | `[b_u]`, D = 1 | shrunken mean residual r - mean - b_i |
| `ease`, `itemknn` | the row x_u + reg * mean row, D = n_items | none needed: scores are x_u @ W |
| `pop` | empty, D = 0 | none needed |
| `bagged` | its members' representations side by side, D = members x the base's D | each member's own |

Rating factor models: with the item factors q_i and biases b_i frozen, the user's ratings are
mapped through the inverse of the model's sigmoid, z = logit((r - lo) / (hi - lo)) - b_i, and
[p, b] solves min |A [p, b] - z|^2 + (x - mu)^T diag(lam / var) (x - mu), A_i = [q_i, 1], with
lam = `reg` (default 0.2) for the factors and `reg_bias` (default 0.3) for the bias.
The prior mean `mu` and variances `var` are those of the trained users' [p_u, b_u], each user
weighted by their number of ratings (the ratings still to predict come mostly from users who rate
a lot), so a user with one rating starts from the average user rather than from zero. Given the
new user's age / gender / occupation (`user_features`) and a model that kept its training users'
features, `mu` becomes a ridge regression (`DEMOGRAPHIC_REG`) of [p_u, b_u] on those features and
`var` its residual variance. On ml-100k user-cold (k = 5 ratings revealed) this beat the
rating-scale Gauss-Newton solve, the linear residual solve on r - mean - b_i, an isotropic ridge,
and a full-covariance prior (see docs/incremental.md); the separate regularisers, the weighting
and the demographic prior were chosen on validation users carved from the training users.

Item-item models add `reg` (default 1) times the average training user's 0/1 row to the new
user's row: one average user's worth of prior, which is popularity through W. Without it a user
with five items gets only those items' neighbours; with it, EASE beat most-popular on ml-100k
user-cold NDCG@10 at every k (without it, it lost at every k).

A `bagged` model (`models.ensemble.Bagged`) folds the user into every member, each with its own
prior (or demographic prior) and learnt strengths, and its scores are the mean of the members'.

A user with no (known) history gets a defined answer from `cold_scores`: the bias-adjusted item
mean for rating models, popularity otherwise, or the popularity among training users of the same
age band / gender / occupation when their features are given and the model kept user features.

    >>> recs = recommend_for_new_user(model, items=[50, 172, 181], ratings=[5, 4, 5], k=10)
    >>> predict_for_new_user(model, [50, 172], [5, 4], target_items=[1, 2],
    ...                      user_features={"age": 25, "gender": "F", "occupation": "student"})
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
import torch

from recotorch.evaluate.metrics import top_k
from recotorch.models.base import Estimator, Recommendations

__all__ = ["cold_scores", "demographic_design", "demographic_popularity", "fold_in", "fold_in_indices",
           "new_user_pair_scores", "new_user_scores", "predict_for_new_user", "recommend_for_new_user",
           "ridge_fold_in"]

DEFAULT_REG = 0.1  # prior strength of the closed-form solves of `recotorch.models.incremental`
FOLD_IN_REG = 0.2  # fold-in prior strength of a new user's factors, in units of the trained users' variance
FOLD_IN_REG_BIAS = 0.3  # ... and of a new user's bias
DEMOGRAPHIC_REG = 100.0  # ridge of the regression of trained users' [p_u, b_u] on their features
DEMOGRAPHIC_GROUPS = ("age", "gender", "occupation")  # age enters as its MovieLens-1M band
DEFAULT_ITEM_PRIOR = 1.0  # item-item models: weight of the average training user's row added to x_u
AGE_BANDS = ((18, "<18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49"), (56, "50-55"))
_EPS = 0.02  # targets are clipped to (eps, 1 - eps) of the range before the logit


def age_band(age: int | None) -> str | None:
    """The MovieLens-1M age groups: "<18", "18-24", ..., "56+" (None stays None)."""
    if age is None:
        return None
    return next((name for limit, name in AGE_BANDS if age < limit), "56+")


def age_band_expr(age: pl.Expr) -> pl.Expr:
    """`age_band` as a Polars expression (nulls stay null)."""
    expr = pl.when(age.is_not_null()).then(pl.lit("56+"))
    for limit, name in reversed(AGE_BANDS):
        expr = pl.when(age < limit).then(pl.lit(name)).otherwise(expr)
    return expr


# ---- which kind of model ---------------------------------------------------------------------
def _kind(model: Estimator) -> str:
    from recotorch.models.als import ImplicitALS
    from recotorch.models.baselines import BiasBaseline
    from recotorch.models.ensemble import Bagged
    from recotorch.models.itemknn import ItemItemModel
    from recotorch.models.popularity import MostPopular

    if isinstance(model, Bagged):
        return "bagged"
    if isinstance(model, ImplicitALS):
        return "als"
    if isinstance(model, BiasBaseline):
        return "bias"
    if isinstance(model, ItemItemModel):
        return "itemitem"
    if isinstance(model, MostPopular):
        return "pop"
    if model.task == "rating" and hasattr(model, "rating_range_") and hasattr(model, "item_biases"):
        return "factors"
    raise TypeError(f"fold-in is not available for {type(model).__name__}")


def _item_side(model: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(item factors (n_items, d), item biases (n_items,)) of a rating factor model."""
    return model.item_vectors().float(), model.item_biases().float()


def _trained_users(model: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(the trained users' [p_u, b_u] (n_users, d+1), weights (n_users,) = share of the ratings)."""
    users = model.user_vectors().float()
    user_bias = model.user_biases() if hasattr(model, "user_biases") else model.module_.user_bias.weight.squeeze(1)
    x = torch.cat([users, user_bias.detach().cpu().float()[:, None]], 1)
    w = model.seen_.row_lengths().float().clamp(min=1.0)
    return x, w / w.sum()


def _user_prior(model: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (d+1,), variances (d+1,)) of the trained users' [p_u, b_u], weighted by their ratings."""
    x, w = _trained_users(model)
    mu = w @ x
    var = w @ (x - mu) ** 2 if x.shape[0] > 1 else torch.ones(x.shape[1])
    return mu, var.clamp(min=1e-6)


def demographic_design(frame: pl.DataFrame, levels: Sequence[tuple[str, str]] | None = None
                       ) -> tuple[torch.Tensor, list[tuple[str, str]]]:
    """One-hot design (n, len(levels)) of age band, gender and occupation, and its (column, value) levels.

    Without `levels` they are read from `frame` (sorted); values outside them, nulls and missing
    columns give all-zero entries, i.e. the population average for that group.
    """
    as_band = age_band_expr(pl.col("age").cast(pl.Int64, strict=False))
    cols = {c: (as_band if c == "age" else pl.col(c).cast(pl.Utf8)).alias(c)
            for c in DEMOGRAPHIC_GROUPS if c in frame.columns}
    values = frame.select(list(cols.values())) if cols else pl.DataFrame()
    if levels is None:
        levels = [(c, v) for c in cols for v in values[c].drop_nulls().unique().sort().to_list()]
    out = torch.zeros(len(frame), len(levels))
    for col in cols:  # one vectorised lookup per group: value -> column of `levels` (-1 = none)
        column = {v: j for j, (c, v) in enumerate(levels) if c == col}
        codes = values[col].replace_strict(column, default=-1, return_dtype=pl.Int64).fill_null(-1)
        code = torch.from_numpy(codes.to_numpy(writable=True))
        hit = code >= 0
        out[torch.arange(len(frame))[hit], code[hit]] = 1.0
    return out, list(levels)


DemographicPrior = tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]], torch.Tensor]
_PRIORS: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], DemographicPrior | None]] = weakref.WeakKeyDictionary()


def _demographic_prior(model: Any) -> DemographicPrior | None:
    """`_fit_demographic_prior`, remembered per model while its module, features and weights stay the same
    (held beside the model, never written into it)."""
    module = getattr(model, "module_", None)
    versions = tuple(t._version for t in module.parameters()) if module is not None else ()
    key = (id(module), versions, id(getattr(model, "user_features_", None)), id(model.seen_))
    cached = _PRIORS.get(model)
    if cached is None or cached[0] != key:
        cached = (key, _fit_demographic_prior(model))
        _PRIORS[model] = cached
    return cached[1]


def _fit_demographic_prior(model: Any) -> DemographicPrior | None:
    """(mean (d+1,), coefficients (G, d+1), levels, residual variances (d+1,)) of the ridge regression
    of the trained users' [p_u, b_u] on their one-hot features (rating-weighted); None without features."""
    frame: pl.DataFrame | None = getattr(model, "user_features_", None)
    if frame is None or len(frame) != model.n_users or not set(DEMOGRAPHIC_GROUPS) & set(frame.columns):
        return None
    x, w = _trained_users(model)
    g, levels = demographic_design(frame)
    if not levels:
        return None
    mu = w @ x
    gw = g * w[:, None]
    coef = torch.linalg.solve(g.T @ gw + DEMOGRAPHIC_REG / x.shape[0] * torch.eye(g.shape[1]), gw.T @ (x - mu))
    var = w @ (x - mu - g @ coef) ** 2
    return mu, coef, levels, var.clamp(min=1e-6)


def _prior(model: Any, batch: int, user_features: pl.DataFrame | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(prior means (batch, d+1), variances (d+1,)): demographic when features are given and usable."""
    found = _demographic_prior(model) if user_features is not None else None
    if found is None:
        mu, var = _user_prior(model)
        return mu.expand(batch, -1), var
    mu, coef, levels, var = found
    if len(user_features) != batch:
        raise ValueError(f"got {len(user_features)} rows of user features for {batch} users")
    return mu + demographic_design(user_features, levels)[0] @ coef, var


# ---- fold-in ---------------------------------------------------------------------------------
def fold_in(model: Estimator, items: Sequence[Any], ratings: Sequence[float] | None = None, *,
            reg: float | None = None, reg_bias: float | None = None,
            user_features: Mapping[str, Any] | None = None) -> torch.Tensor:
    """The representation (D,) of a new user with this history (raw item ids; unknown ones ignored).

    `ratings` are required by rating models and act as confidences for ALS (default 1); item-item
    models and popularity ignore them (pass the liked items). `reg` defaults to `FOLD_IN_REG` for
    rating factor models, the model's own `reg` for ALS, `reg_user` for bias models and
    `DEFAULT_ITEM_PRIOR` for item-item models; `reg_bias` (rating factor models: the user bias's
    prior strength) defaults to `reg` when that is given, else `FOLD_IN_REG_BIAS`. `user_features`
    (age, gender, occupation) give rating factor models a demographic prior. Nothing is trained
    or written.
    """
    idx, val = _history(model, items, ratings)
    frame = pl.DataFrame([dict(user_features)]) if user_features else None
    return fold_in_indices(model, idx[None], None if val is None else val[None], reg=reg, reg_bias=reg_bias,
                           user_features=frame)[0]


def fold_in_indices(model: Estimator, item_idx: torch.Tensor, ratings: torch.Tensor | None = None, *,
                    reg: float | None = None, reg_bias: float | None = None,
                    user_features: pl.DataFrame | None = None) -> torch.Tensor:
    """Batched fold-in: item_idx (B, L) model indices, -1 = padding; ratings (B, L). Returns (B, D).

    `user_features` (B rows: age, gender, occupation) switch rating factor models to the
    demographic prior; other kinds ignore them.
    """
    kind = _kind(model)
    item_idx = item_idx.long()
    mask = item_idx >= 0
    safe = item_idx.clamp(min=0)
    n = mask.sum(1).float()  # (B,)
    if kind == "pop":
        return torch.zeros(item_idx.shape[0], 0)
    if kind == "bagged":  # each member's representation, side by side
        return torch.cat([fold_in_indices(m, item_idx, ratings, reg=reg, reg_bias=reg_bias, user_features=user_features)
                          for m in model.members_], 1)
    if kind == "itemitem":  # the 0/1 row plus `reg` times the average training user's row
        rows = torch.zeros(item_idx.shape[0], model.n_items).scatter_reduce_(1, safe, mask.float(), reduce="amax")
        mean_row = torch.bincount(model.seen_.indices, minlength=model.n_items).float() / max(model.n_users, 1)
        return rows + (DEFAULT_ITEM_PRIOR if reg is None else reg) * mean_row
    if ratings is None and kind in ("factors", "bias"):
        raise ValueError(f"{type(model).__name__} predicts ratings: give the new user's ratings")
    r = ratings.float() if ratings is not None else torch.ones(item_idx.shape)
    r = torch.where(mask, r, torch.zeros(()))
    if kind == "bias":
        if not model.use_users:  # e.g. GlobalMean: the model has no user term to fill
            return torch.zeros(item_idx.shape[0], 1)
        resid = (r - model.mean_ - model.item_bias_[safe]) * mask  # (B, L)
        return (resid.sum(1) / (n + (model.reg_user if reg is None else reg)))[:, None]
    if kind == "als":
        y = model.item_factors_.cpu()
        lam = model.reg if reg is None else reg
        a = y[safe] * mask[..., None]  # (B, L, d)
        conf = model.alpha * r
        gram = y.T @ y + lam * torch.eye(y.shape[1]) + torch.einsum("bl,bld,ble->bde", conf, a, a)
        rhs = torch.einsum("bl,bld->bd", 1.0 + conf, a)
        return torch.linalg.solve(gram, rhs)
    (q, b), (mu, var) = _item_side(model), _prior(model, item_idx.shape[0], user_features)
    # a model trained for fold-in (`ColdStartMF`) carries its own learnt prior strengths
    own_reg, own_bias = getattr(model, "fold_in_reg_", None) or (FOLD_IN_REG, FOLD_IN_REG_BIAS)
    lam_bias = (own_bias if reg is None else reg) if reg_bias is None else reg_bias
    lam = torch.full((q.shape[1] + 1,), own_reg if reg is None else reg)
    lam[-1] = lam_bias
    return ridge_fold_in(q, b, safe, r, mask, mu, lam / var, model.rating_range_)


def ridge_fold_in(q: torch.Tensor, b: torch.Tensor, safe: torch.Tensor, r: torch.Tensor, mask: torch.Tensor,
                  mu: torch.Tensor, prior: torch.Tensor, rating_range: tuple[float, float] | None) -> torch.Tensor:
    """[p, b_u] (B, d+1) of the closed-form ridge fold-in; differentiable in `q`, `b`, `mu` and `prior`.

    q (n_items, d), b (n_items,): the item side; safe (B, L): item indices (padding any valid index);
    r (B, L) ratings; mask (B, L) which entries count; mu (B, d+1) or (d+1,) prior means; prior (d+1,)
    the diagonal prior precision lam / var. Targets are logits of the ratings on `rating_range`.
    """
    a = torch.cat([q[safe], torch.ones(*safe.shape, 1, dtype=q.dtype, device=q.device)], -1) * mask[..., None]
    z = r - b[safe]
    if rating_range is not None:
        lo, hi = rating_range
        y = ((r - lo) / (hi - lo)).clamp(_EPS, 1 - _EPS)
        z = torch.log(y / (1 - y)) - b[safe]
    gram = a.transpose(1, 2) @ a + torch.diag(prior)  # (B, d+1, d+1)
    rhs = torch.einsum("bld,bl->bd", a, z * mask) + prior * mu
    return torch.linalg.solve(gram, rhs)


# ---- scores from representations -------------------------------------------------------------
def new_user_scores(model: Estimator, vectors: torch.Tensor) -> torch.Tensor:
    """Scores (B, n_items) of folded-in users against the whole catalogue."""
    kind = _kind(model)
    if kind == "bagged":
        return _mean_of_members(model, vectors, new_user_scores)
    with torch.no_grad():
        if kind == "pop":
            return model.popularity_.expand(vectors.shape[0], -1).clone()
        if kind == "itemitem":  # rows with the prior are dense: a dense product when W is dense (EASE)
            if hasattr(model, "weights_"):
                return (vectors.to(model.weights_.device) @ model.weights_).cpu()
            return model._propagate(vectors.to_sparse().to(model.torch_device)).cpu()
        if kind == "als":
            return vectors @ model.item_factors_.cpu().T
        if kind == "bias":
            return (model.mean_ + vectors + model.item_bias_[None, :]).clamp(*model.range_)
        q, b = _item_side(model)
        return _squash(vectors[:, :-1] @ q.T + vectors[:, -1:] + b[None, :], model.rating_range_)


def new_user_pair_scores(model: Estimator, vectors: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
    """Scores (B, M) of folded-in users for chosen items item_idx (B, M) (model indices, all >= 0)."""
    kind = _kind(model)
    if kind == "bagged":
        return _mean_of_members(model, vectors, lambda m, v: new_user_pair_scores(m, v, item_idx))
    if kind == "factors":
        q, b = _item_side(model)
        raw = torch.einsum("bd,bmd->bm", vectors[:, :-1], q[item_idx]) + vectors[:, -1:] + b[item_idx]
        return _squash(raw, model.rating_range_)
    if kind == "bias":
        return (model.mean_ + vectors + model.item_bias_[item_idx]).clamp(*model.range_)
    return new_user_scores(model, vectors).gather(1, item_idx)


def _mean_of_members(model: Any, vectors: torch.Tensor, scores: Any) -> torch.Tensor:
    """Mean over a bagged model's members of `scores(member, that member's slice of vectors)`."""
    parts = vectors.tensor_split(len(model.members_), dim=1)
    return torch.stack([scores(m, v).float() for m, v in zip(model.members_, parts, strict=True)]).mean(0)


def _squash(raw: torch.Tensor, rating_range: tuple[float, float] | None) -> torch.Tensor:
    if rating_range is None:
        return raw
    lo, hi = rating_range
    return torch.sigmoid(raw) * (hi - lo) + lo


# ---- users with no history -------------------------------------------------------------------
def cold_scores(model: Estimator, user_features: Mapping[str, Any] | None = None, *,
                min_users: int = 20) -> torch.Tensor:
    """Scores (n_items,) for a user with no history: demographic popularity when `user_features`
    (age, gender, occupation) are given and the model kept training users' features, else the
    bias-adjusted item mean (rating models) or the number of training users per item."""
    if user_features:
        found = demographic_popularity(model, user_features, min_users=min_users)
        if found is not None:
            return found
    baseline = getattr(model, "baseline_", None)
    if baseline is not None:
        mean, _, item_bias = baseline
        span = getattr(model, "rating_range_", None)
        return (mean + item_bias.float()).clamp(*span) if span else mean + item_bias.float()
    if hasattr(model, "item_bias_") and hasattr(model, "mean_"):
        return (model.mean_ + model.item_bias_.float()).clamp(*model.range_)
    return _item_counts(model, None)


def demographic_popularity(model: Estimator, user_features: Mapping[str, Any], *,
                           min_users: int = 20) -> torch.Tensor | None:
    """Item counts among training users sharing the new user's age band, gender and occupation.

    If fewer than `min_users` match, occupation is dropped, then age band, then gender. Global
    popularity breaks ties. None when the model has no user features or nothing matches.
    """
    frame: pl.DataFrame | None = getattr(model, "user_features_", None)
    if frame is None or len(frame) != model.n_users:
        return None
    wanted = {k: v for k, v in user_features.items() if k in ("age", "gender", "occupation") and v is not None
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
            counts = _item_counts(model, users)
            return counts + _item_counts(model, None) / (model.n_users + 1.0)  # ties: global popularity
    return None


def _item_counts(model: Estimator, users: torch.Tensor | None) -> torch.Tensor:
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


# ---- the raw-id API ----------------------------------------------------------------------------
def _history(model: Estimator, items: Sequence[Any], ratings: Sequence[float] | None
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    items = list(items)
    idx = torch.from_numpy(model.items_.index(items)) if items else torch.empty(0, dtype=torch.int64)
    if ratings is None:
        return idx, None
    val = torch.tensor(np.asarray(ratings, dtype=np.float32))
    if val.numel() != idx.numel():
        raise ValueError(f"got {idx.numel()} items but {val.numel()} ratings")
    return idx, val


def recommend_for_new_user(model: Estimator, items: Sequence[Any], ratings: Sequence[float] | None = None,
                           k: int = 10, exclude_rated: bool = True, *, reg: float | None = None,
                           user_features: Mapping[str, Any] | None = None) -> Recommendations:
    """Top-k items (raw ids in `Recommendations`, user id None) for a user the model never saw.

    With no known history the answer is `cold_scores(model, user_features)`. Items the user
    gave are left out unless `exclude_rated=False`.
    """
    idx, val = _history(model, items, ratings)
    known = idx >= 0
    if known.any():
        vec = fold_in_indices(model, idx[known][None], None if val is None else val[known][None], reg=reg,
                              user_features=pl.DataFrame([dict(user_features)]) if user_features else None)
        scores = new_user_scores(model, vec)[0].float()
    else:
        scores = cold_scores(model, user_features).float()
    scores = scores.clone()
    if exclude_rated and known.any():
        scores[idx[known]] = -torch.inf
    top, val_k = top_k(scores[None], min(k, model.n_items))
    return Recommendations([None], top, val_k, model.items_)


def predict_for_new_user(model: Estimator, items: Sequence[Any], ratings: Sequence[float] | None,
                         target_items: Sequence[Any], *, reg: float | None = None,
                         user_features: Mapping[str, Any] | None = None) -> np.ndarray:
    """Predicted values (len(target_items),) float32 for a new user with this history.

    Target items the model does not know get the model's fallback for an unknown pair (the
    global mean for rating models); an empty history gives `cold_scores` for every target.
    `user_features` (age, gender, occupation) give rating factor models a demographic prior.
    """
    idx, val = _history(model, items, ratings)
    target = torch.from_numpy(model.items_.index(list(target_items)))
    out = model._fallback(torch.full_like(target, -1), torch.full_like(target, -1)).float()
    ok = target >= 0
    known = idx >= 0
    if known.any():
        vec = fold_in_indices(model, idx[known][None], None if val is None else val[known][None], reg=reg,
                              user_features=pl.DataFrame([dict(user_features)]) if user_features else None)
        out[ok] = new_user_pair_scores(model, vec, target[ok][None])[0].float()
    else:
        out[ok] = cold_scores(model)[target[ok]].float()
    return out.numpy()
