"""Cold-start protocols: users the model never saw (fold-in), items it knows only by their metadata.

User-cold: a seeded `frac` of users is held out entirely; models are fitted on the others. Each
held-out user reveals their first k ratings by time and is scored on the rest (so the test rows
change with k; every model in a k-block sees the same rows). Rating models are scored by RMSE via
fold-in, ranking by NDCG/Recall@10 over the full catalogue (relevant = the rest rated >=
`threshold`, revealed items masked). Item-cold: a seeded `frac` of items is held out; models are
fitted on the rest and the held-out items are ranked, for each user who interacted with some of
them, among all held-out items, from metadata only.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch

from recotorch.core.topk import top_k
from recotorch.data.interactions import CSR, Interactions, build_csr
from recotorch.evaluate.metrics import mae, ranking_metrics, rmse
from recotorch.evaluate.protocol import Report
from recotorch.models.base import Estimator
from recotorch.online.foldin import cold_scores

__all__ = ["ItemColdSplit", "UserColdSplit", "genre_baselines", "item_cold_ranking", "item_cold_rating",
           "item_cold_split", "reveal_first", "user_cold_ranking", "user_cold_rating", "user_cold_split"]

KS = (1, 3, 5, 10)


# ---- splits ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UserColdSplit:
    """`train`: the warm users' rows; `cold`: every row of the held-out users (same vocabularies)."""

    train: Interactions
    cold: Interactions


@dataclass(frozen=True)
class ItemColdSplit:
    """`train`: rows of the warm items; `test`: rows of held-out items by users known to `train`."""

    train: Interactions
    test: Interactions
    items: pl.DataFrame  # feature rows (with `id`) of the held-out items, in random order


def _held_out(n: int, frac: float, seed: int) -> torch.Tensor:
    if not 0 < frac < 1:
        raise ValueError(f"frac must be in (0, 1), got {frac}")
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: max(1, round(frac * n))]] = True
    return mask


def user_cold_split(data: Interactions, frac: float = 0.2, seed: int = 0) -> UserColdSplit:
    """Hold out a seeded `frac` of the users (those with rows) with all their rows."""
    users = torch.unique(data.user_idx)
    cold_users = users[_held_out(users.numel(), frac, seed)]
    cold = torch.zeros(data.n_users, dtype=torch.bool)
    cold[cold_users] = True
    is_cold = cold[data.user_idx]
    return UserColdSplit(data.subset(~is_cold), data.subset(is_cold))


def item_cold_split(data: Interactions, frac: float = 0.2, seed: int = 0) -> ItemColdSplit:
    """Hold out a seeded `frac` of the items; needs `data.item_features` to describe them."""
    if data.item_features is None:
        raise ValueError("the item-cold protocol needs item features")
    items = torch.unique(data.item_idx)
    order = torch.randperm(items.numel(), generator=torch.Generator().manual_seed(seed + 1))
    cold_items = items[order][_held_out(items.numel(), frac, seed)[order]]  # shuffled: ties carry no signal
    cold = torch.zeros(data.n_items, dtype=torch.bool)
    cold[cold_items] = True
    is_cold = cold[data.item_idx]
    train = data.subset(~is_cold)
    warm_user = torch.bincount(train.user_idx, minlength=data.n_users) > 0
    test = data.subset(is_cold & warm_user[data.user_idx])
    return ItemColdSplit(train, test, data.item_features[cold_items.numpy()])  # random order: no index leak


def reveal_first(cold: Interactions, k: int) -> tuple[Interactions, Interactions]:
    """(each user's first k rows by timestamp, the rest); ties keep row order."""
    if cold.timestamp is None:
        raise ValueError("revealing the first ratings needs timestamps")
    order = torch.argsort(cold.timestamp, stable=True)
    order = order[torch.argsort(cold.user_idx[order], stable=True)]  # by (user, time, row)
    counts = torch.bincount(cold.user_idx, minlength=cold.n_users)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(len(cold), dtype=torch.int64)
    rank[order] = torch.arange(len(cold)) - starts[cold.user_idx[order]]
    return cold.subset(rank < k), cold.subset(rank >= k)


# ---- helpers -----------------------------------------------------------------------------------
def _padded(rows: Interactions, users: torch.Tensor, model: Estimator) -> tuple[torch.Tensor, torch.Tensor]:
    """Item indices of the model (B, L) (-1 pads and unknown items) and ratings (B, L) per user of `users`."""
    item = torch.from_numpy(model.items_.index(rows.items.ids.gather(rows.item_idx.numpy())))
    pos = torch.full((rows.n_users,), -1, dtype=torch.int64)
    pos[users] = torch.arange(users.numel())
    b = pos[rows.user_idx]
    keep = b >= 0
    b, item = b[keep], item[keep]
    rating = rows.rating[keep] if rows.rating is not None else torch.ones(b.numel())
    order = torch.argsort(b, stable=True)
    b, item, rating = b[order], item[order], rating[order]
    counts = torch.bincount(b, minlength=users.numel())
    col = torch.arange(b.numel()) - (torch.cumsum(counts, 0) - counts)[b]
    width = int(counts.max()) if counts.numel() and b.numel() else 0
    idx = torch.full((users.numel(), width), -1, dtype=torch.int64)
    val = torch.zeros(users.numel(), width)
    idx[b, col], val[b, col] = item, rating.float()
    return idx, val


def _folded_scores(model: Estimator, revealed: Interactions, users: torch.Tensor, reg: float | None,
                   threshold: float | None, user_features: pl.DataFrame | None = None) -> torch.Tensor:
    """Full-catalogue scores (B, n_items) after folding in each user's revealed rows.

    Ranking models fold in only revealed items rated >= `threshold`; users left with none get the
    model's `cold_scores`. `user_features` (one row per user of `users`) give a demographic prior.
    """
    if model.task == "ranking" and threshold is not None and revealed.rating is not None:
        revealed = revealed.subset(revealed.rating >= threshold)
    idx, val = _padded(revealed, users, model)
    ratings = val if model.task == "rating" else None
    vectors = model.fold_in(idx, ratings, reg=reg, user_features=user_features)
    scores = model.score_new_users(vectors).float()
    empty = (idx < 0).all(1)
    if empty.any():
        scores[empty] = cold_scores(model).float()
    return scores


# ---- user-cold -----------------------------------------------------------------------------------
def user_cold_rating(models: Sequence[tuple[str, Estimator]], split: UserColdSplit, ks: Sequence[int] = KS, *,
                     reg: float | None = None, item_bias: Estimator | None = None,
                     feature_prior: Collection[str] = ()) -> Report:
    """RMSE/MAE of fitted rating models on held-out users via fold-in, for each k revealed ratings.

    `item_bias` (a fitted `BiasBaseline`) adds the "item bias (user unknown)" row: mean + b_i.
    Models whose label is in `feature_prior` are folded in with the held-out users' features
    (age, gender, occupation from `split.cold.user_features`) as prior. Rows whose item the
    models never saw are left out (counted in the notes).
    """
    report = Report("User-cold rating prediction (fold-in of the first k ratings)")
    for k in ks:
        revealed, rest = reveal_first(split.cold, k)
        users = torch.unique(rest.user_idx)
        labelled: list[tuple[str, Estimator, bool]] = [(label, m, True) for label, m in models]
        if item_bias is not None:
            labelled.insert(0, ("item bias (user unknown)", item_bias, False))
        ref = labelled[0][1]
        item = torch.from_numpy(ref.items_.index(rest.items.ids.gather(rest.item_idx.numpy())))
        known = item >= 0
        pos = torch.full((rest.n_users,), -1, dtype=torch.int64)
        pos[users] = torch.arange(users.numel())
        b, target = pos[rest.user_idx][known], rest.rating[known]  # type: ignore[index]
        for label, model, fold in labelled:
            i = torch.from_numpy(model.items_.index(rest.items.ids.gather(rest.item_idx.numpy())))[known]
            if fold:
                features = None
                if label in feature_prior:
                    if split.cold.user_features is None:
                        raise ValueError(f"{label!r}: the held-out users have no features")
                    features = split.cold.user_features[users.numpy()]
                pred = _folded_scores(model, revealed, users, reg, None, features)[b, i]
            else:
                pred = model.fallback(torch.full_like(i, -1), i).float()
            report.rows.append({"k": k, "model": label, "RMSE": rmse(pred, target), "MAE": mae(pred, target),
                                "users": users.numel(), "rows": int(known.sum())})
        if int((~known).sum()):
            report.notes.append(f"k={k}: {int((~known).sum())} test rows on items unseen in training left out")
    return report


def user_cold_ranking(models: Sequence[tuple[str, Estimator]], split: UserColdSplit, ks: Sequence[int] = KS, *,
                      threshold: float = 4.0, cutoffs: Sequence[int] = (10,), reg: float | None = None,
                      demographics: Estimator | None = None) -> Report:
    """NDCG/Recall/HitRate@K over the full catalogue for held-out users, per k revealed ratings.

    Relevant: the user's later items rated >= `threshold` that every model knows (so all rows
    share one test set); revealed items are masked. `demographics` (a fitted model
    that kept user features) adds a k-independent row: popularity among the same age band /
    gender / occupation.
    """
    report = Report(f"User-cold top-N (full catalogue, relevant = rating >= {threshold:g})")
    for k in ks:
        revealed, rest = reveal_first(split.cold, k)
        positives = rest.subset(rest.rating >= threshold)  # type: ignore[operator]
        raw_items = positives.items.ids.gather(positives.item_idx.numpy())
        common = torch.ones(len(positives), dtype=torch.bool)  # items every model can rank
        for _, m in [*models, *([("", demographics)] if demographics is not None else [])]:
            common &= torch.from_numpy(m.items_.index(raw_items)) >= 0
        positives = positives.subset(common)
        users = torch.unique(positives.user_idx)
        entries = [(label, m, False) for label, m in models]
        if demographics is not None:
            entries.append(("popularity by demographics (no history)", demographics, True))
        for label, model, by_group in entries:
            if by_group:
                scores = _demographic_scores(model, split.cold, users)
            else:
                scores = _folded_scores(model, revealed, users, reg, threshold)
            rel_idx, _ = _padded(positives, users, model)
            seen_idx, _ = _padded(revealed, users, model)
            metrics = _rank(scores, rel_idx, seen_idx, cutoffs, model.n_items)
            report.rows.append({"k": k, "model": label, **metrics})
    return report


def _demographic_scores(model: Estimator, cold: Interactions, users: torch.Tensor) -> torch.Tensor:
    frame = cold.user_features
    out = torch.empty(users.numel(), model.n_items)
    for row, u in enumerate(users.tolist()):
        features = frame.row(u, named=True) if frame is not None else None
        out[row] = cold_scores(model, features)
    return out


def _rows_to_csr(idx: torch.Tensor) -> CSR:
    rows = torch.arange(idx.shape[0])[:, None].expand_as(idx)
    keep = idx >= 0
    return build_csr(rows[keep], idx[keep], idx.shape[0])


def _rank(scores: torch.Tensor, relevant: torch.Tensor, masked: torch.Tensor, cutoffs: Sequence[int],
          n_items: int) -> dict[str, Any]:
    top, _ = top_k(scores, max(cutoffs), exclude=_rows_to_csr(masked))
    metrics = ranking_metrics(top, _rows_to_csr(relevant), cutoffs, n_items=n_items)
    out: dict[str, Any] = {}
    for name in ("ndcg", "recall", "hit_rate"):
        out |= {f"{name}@{c}": metrics[f"{name}@{c}"] for c in cutoffs}
    out["users"] = int(metrics["users"])
    return out


# ---- item-cold -----------------------------------------------------------------------------------
def item_cold_ranking(scorers: Sequence[tuple[str, Callable[[list[Any], pl.DataFrame], torch.Tensor]]],
                      split: ItemColdSplit, *, cutoffs: Sequence[int] = (10,), seed: int = 0) -> Report:
    """Rank the held-out items for each user who interacted with some of them, among all held-out items.

    Each scorer maps (raw user ids, held-out item features) to scores (n_users, n_held_out), e.g.
    `lambda u, f: hybrid.score_new_items(u, f)`. Rows: a seeded random ranking, then the scorers.
    AUC is the per-user probability that a relevant item outranks an irrelevant one (ties half).
    Top-k ties are broken by position in `split.items`, which `item_cold_split` shuffles, so a
    scorer that cannot tell items apart gets random-level NDCG rather than catalogue order.
    """
    test = split.test
    users = torch.unique(test.user_idx)
    user_ids = test.users.lookup(users.numpy())
    item_pos = torch.full((test.n_items,), -1, dtype=torch.int64)
    item_pos[torch.from_numpy(test.items.index(split.items["id"]))] = torch.arange(len(split.items))
    pos = torch.full((test.n_users,), -1, dtype=torch.int64)
    pos[users] = torch.arange(users.numel())
    relevant = torch.zeros(users.numel(), len(split.items), dtype=torch.bool)
    relevant[pos[test.user_idx], item_pos[test.item_idx]] = True
    gen = torch.Generator().manual_seed(seed)
    rows: list[tuple[str, Callable[[list[Any], pl.DataFrame], torch.Tensor]]] = [
        ("random", lambda u, f: torch.rand(len(u), len(f), generator=gen)), *scorers]
    report = Report(f"Item-cold ranking: {len(split.items)} metadata-only items, {users.numel()} users")
    rel_idx = torch.where(relevant, torch.arange(len(split.items)), -1)
    for label, scorer in rows:
        scores = scorer(user_ids, split.items).float().contiguous()
        metrics = _rank(scores, rel_idx, torch.full((users.numel(), 0), -1), cutoffs, len(split.items))
        report.rows.append({"model": label, "AUC": _auc(scores, relevant), **metrics})
    return report


def _auc(scores: torch.Tensor, relevant: torch.Tensor) -> float:
    """Mean per-user AUC (ties count half), over users with both relevant and irrelevant items."""
    srt, order = scores.sort(1)
    neg_sorted = (~relevant).gather(1, order).double()
    cum_neg = torch.cat([torch.zeros(scores.shape[0], 1, dtype=torch.float64), neg_sorted.cumsum(1)], 1)
    below = cum_neg.gather(1, torch.searchsorted(srt, scores, right=False))  # negatives scored lower
    upto = cum_neg.gather(1, torch.searchsorted(srt, scores, right=True))  # ... lower or equal
    wins = ((below + upto) / 2 * relevant).sum(1)
    n_pos = relevant.sum(1).double()
    n_neg = relevant.shape[1] - n_pos
    ok = (n_pos > 0) & (n_neg > 0)
    return float((wins[ok] / (n_pos[ok] * n_neg[ok])).mean())


def item_cold_rating(predictors: Sequence[tuple[str, Callable[[list[Any], list[Any]], np.ndarray]]],
                     split: ItemColdSplit) -> Report:
    """RMSE/MAE on the held-out items' ratings; each predictor maps (user ids, item ids) to values."""
    frame = split.test.to_frame()
    users, items = frame["user"].to_list(), frame["item"].to_list()
    target = frame["rating"].to_numpy(writable=True)
    report = Report(f"Item-cold rating prediction ({len(frame)} ratings of metadata-only items)")
    for label, predict in predictors:
        pred = np.asarray(predict(users, items), dtype=np.float64)
        report.rows.append({"model": label, "RMSE": rmse(pred, target), "MAE": mae(pred, target)})
    return report


def genre_baselines(train: Interactions) -> list[tuple[str, Callable[[list[Any], pl.DataFrame], torch.Tensor]]]:
    """Two metadata-only scorers for `item_cold_ranking`, built from `train` (rows + item `genres`).

    "genre profile": the user's share of training items per genre . the item's genres (normalised);
    "genre popularity": the mean training popularity of items sharing the item's genres.
    """
    features = train.item_features
    if features is None or "genres" not in features.columns:
        raise ValueError("genre baselines need item features with a `genres` column")
    names = sorted({g for gs in features["genres"].to_list() if gs for g in gs})
    onehot = _genre_matrix(features, names)  # (n_items, n_genres)
    profile = torch.zeros(train.n_users, len(names)).index_add_(0, train.user_idx, onehot[train.item_idx])
    profile = profile / profile.sum(1, keepdim=True).clamp(min=1)
    popularity = torch.bincount(train.item_idx, minlength=train.n_items).float()
    by_genre = (onehot.T @ popularity) / onehot.sum(0).clamp(min=1)

    def genre_profile(users: list[Any], items: pl.DataFrame) -> torch.Tensor:
        g = _genre_matrix(items, names)
        return profile[torch.from_numpy(train.users.index(users))] @ (g / g.sum(1, keepdim=True).clamp(min=1)).T

    def genre_popularity(users: list[Any], items: pl.DataFrame) -> torch.Tensor:
        g = _genre_matrix(items, names)
        return ((g @ by_genre) / g.sum(1).clamp(min=1)).expand(len(users), -1)

    return [("genre profile (content)", genre_profile), ("genre popularity", genre_popularity)]


def _genre_matrix(frame: pl.DataFrame, names: list[str]) -> torch.Tensor:
    col = {n: j for j, n in enumerate(names)}
    out = torch.zeros(len(frame), len(names))
    for row, genres in enumerate(frame["genres"].to_list()):  # one short list per item
        for g in genres or ():
            if g in col:
                out[row, col[g]] = 1.0
    return out
