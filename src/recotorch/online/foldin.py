"""New users without retraining, in raw ids: fold a user's history into a fitted model whose item side stays frozen.

Each model folds in through its own `fold_in` (see `recotorch.models.base` for the capability,
`recotorch.models.priors` for rating factor models' ridge solve and priors, and each model's
docstring); this module turns raw ids into padded index tensors, handles an empty history
(`cold_scores`: demographic popularity when features are given, else the model's own cold answer)
and ranks with `core.top_k`. What each model returns (`D` = width of the representation):

| model | representation | fold-in |
|---|---|---|
| `mf`, `mf_coldstart`, `hybrid` | `[p_u, b_u]`, D = dim + 1 | closed-form ridge on logit targets (`models.priors`) |
| `als` | `x_u`, D = dim | the ALS user solve with confidences 1 + alpha r (`core.als_solve`) |
| `bias`, `mean` | `[b_u]`, D = 1 | shrunken mean residual r - mean - b_i |
| `ease`, `itemknn`, `rp3beta` | the row x_u + reg * mean row, D = n_items | none needed: scores are x_u @ W |
| `pop` | empty, D = 0 | none needed |
| `bagged` | its members' representations side by side | each member's own; scores are the members' mean |

    >>> recs = recommend_for_new_user(model, items=[50, 172, 181], ratings=[5, 4, 5], k=10)
    >>> predict_for_new_user(model, [50, 172], [5, 4], target_items=[1, 2],
    ...                      user_features={"age": 25, "gender": "F", "occupation": "student"})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
import torch

from recotorch.core.topk import top_k
from recotorch.errors import UnknownIdError
from recotorch.models.base import Estimator, Recommendations
from recotorch.online.popularity import demographic_popularity

__all__ = ["cold_scores", "fold_in", "fold_in_indices", "new_user_pair_scores", "new_user_scores",
           "predict_for_new_user", "recommend_for_new_user", "recommend_from_history", "scores_for_history"]


def fold_in_indices(model: Estimator, item_idx: torch.Tensor, ratings: torch.Tensor | None = None, *,
                    reg: float | None = None, reg_bias: float | None = None,
                    user_features: pl.DataFrame | None = None) -> torch.Tensor:
    """Batched fold-in: item_idx (B, L) model indices, -1 = padding; ratings (B, L). Returns (B, D)."""
    return model.fold_in(item_idx, ratings, reg=reg, reg_bias=reg_bias, user_features=user_features)


def new_user_scores(model: Estimator, vectors: torch.Tensor) -> torch.Tensor:
    """Scores (B, n_items) of folded-in users against the whole catalogue."""
    return model.score_new_users(vectors)


def new_user_pair_scores(model: Estimator, vectors: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
    """Scores (B, M) of folded-in users for chosen items item_idx (B, M) (model indices, all >= 0)."""
    return model.score_new_user_pairs(vectors, item_idx)


def cold_scores(model: Estimator, user_features: Mapping[str, Any] | None = None, *,
                min_users: int = 20) -> torch.Tensor:
    """Scores (n_items,) for a user with no history: demographic popularity when `user_features`
    (age, gender, occupation) are given and the model kept training users' features, else the
    model's own `cold_scores()` (bias-adjusted item mean for rating models, popularity otherwise)."""
    if user_features:
        found = demographic_popularity(model, user_features, min_users=min_users)
        if found is not None:
            return found
    return model.cold_scores()


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


def _frame(user_features: Mapping[str, Any] | None) -> pl.DataFrame | None:
    return pl.DataFrame([dict(user_features)]) if user_features else None


def fold_in(model: Estimator, items: Sequence[Any], ratings: Sequence[float] | None = None, *,
            reg: float | None = None, reg_bias: float | None = None,
            user_features: Mapping[str, Any] | None = None) -> torch.Tensor:
    """The representation (D,) of a new user with this history (raw item ids; unknown ones ignored).

    `ratings` are required by rating models and act as confidences for ALS (default 1); item-item
    models and popularity ignore them. `reg`/`reg_bias` override the model's prior strengths;
    `user_features` (age, gender, occupation) give rating factor models a demographic prior.
    """
    idx, val = _history(model, items, ratings)
    return model.fold_in(idx[None], None if val is None else val[None], reg=reg, reg_bias=reg_bias,
                         user_features=_frame(user_features))[0]


def scores_for_history(model: Estimator, item_idx: torch.Tensor, values: torch.Tensor | None, *,
                       reg: float | None = None, user_features: Mapping[str, Any] | None = None) -> torch.Tensor:
    """Scores (n_items,) for one new user: history item_idx (L,) (model indices, -1 = unknown, ignored)
    with values (L,), folded in; an empty (known) history gets `cold_scores(model, user_features)`."""
    known = item_idx >= 0
    if not known.any():
        return cold_scores(model, user_features).float()
    vec = model.fold_in(item_idx[known][None], None if values is None else values[known][None], reg=reg,
                        user_features=_frame(user_features))
    return model.score_new_users(vec)[0].float()


def recommend_for_new_user(model: Estimator, items: Sequence[Any], ratings: Sequence[float] | None = None,
                           k: int = 10, exclude_rated: bool = True, *, reg: float | None = None,
                           user_features: Mapping[str, Any] | None = None) -> Recommendations:
    """Top-k items (raw ids in `Recommendations`, user id None) for a user the model never saw.

    With no known history the answer is `cold_scores(model, user_features)`. Items the user
    gave are left out unless `exclude_rated=False`.
    """
    idx, val = _history(model, items, ratings)
    known = idx >= 0
    scores = scores_for_history(model, idx, val, reg=reg, user_features=user_features).clone()
    if exclude_rated and known.any():
        scores[idx[known]] = -torch.inf
    top, val_k = top_k(scores[None], min(k, model.n_items))
    return Recommendations([None], top, val_k, model.items_)


def recommend_from_history(model: Estimator, items: Sequence[Any], k: int = 10, *,
                           repeats: bool = False) -> Recommendations:
    """Top-k next items for an anonymous user from the raw item ids they touched, oldest first.

    A model with the "next_items" capability reads the order (`recommend_history`); any other model
    folds the items in as liked items (`recommend_for_new_user`). The history's items are left out
    unless `repeats=True`. Unknown ids raise `UnknownIdError` (none is dropped silently).

    >>> recommend_from_history(sasrec, [50, 172, 133], k=10, repeats=False)
    """
    if model.supports("next_items"):
        return model.recommend_history(items, k, exclude_seen=not repeats)
    idx, _ = _history(model, items, None)
    if (idx < 0).any():
        missing = [list(items)[j] for j in (idx < 0).nonzero().flatten().tolist()[:5]]
        raise UnknownIdError(f"unknown item id(s) in the history: {missing}")
    return recommend_for_new_user(model, items, None, k, exclude_rated=not repeats)


def predict_for_new_user(model: Estimator, items: Sequence[Any], ratings: Sequence[float] | None,
                         target_items: Sequence[Any], *, reg: float | None = None,
                         user_features: Mapping[str, Any] | None = None) -> np.ndarray:
    """Predicted values (len(target_items),) float32 for a new user with this history.

    Target items the model does not know get the model's fallback for an unknown pair (the
    global mean for rating models); an empty history gives the model's `cold_scores` for every target.
    """
    idx, val = _history(model, items, ratings)
    target = torch.from_numpy(model.items_.index(list(target_items)))
    out = model.fallback(torch.full_like(target, -1), torch.full_like(target, -1)).float()
    ok = target >= 0
    known = idx >= 0
    if known.any():
        vec = model.fold_in(idx[known][None], None if val is None else val[known][None], reg=reg,
                            user_features=_frame(user_features))
        out[ok] = model.score_new_user_pairs(vec, target[ok][None])[0].float()
    else:
        out[ok] = model.cold_scores()[target[ok]].float()
    return out.numpy()
