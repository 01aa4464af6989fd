"""Top-N protocol: fit ranking models, rank the whole catalogue for every test user, report.

The benchmark split (`ranking_split`): ratings >= 4 are the positives; each user with >= 5
positives has the latest 20% of them (by timestamp) held out; held-out items never seen in
train are dropped (a model cannot rank an item it has no column for). Metrics follow
`recotorch.evaluate.metrics`: full catalogue, each user's train items masked, ties broken by
item index, so results do not depend on the evaluation batch size.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from recotorch.data.implicit import to_implicit
from recotorch.data.interactions import Interactions, build_csr
from recotorch.data.splits import Split, last_fraction
from recotorch.evaluate.metrics import evaluate_ranking
from recotorch.evaluate.protocol import Report
from recotorch.models.base import Estimator

__all__ = ["compare_ranking_models", "ranking_metrics_for", "ranking_split"]

_REPORTED = ("ndcg", "recall", "map", "hit_rate")


def ranking_split(data: Interactions, threshold: float | None = 4, frac: float = 0.2, min_rows: int = 5) -> Split:
    """The top-N benchmark split: positives (rating >= threshold), latest `frac` per user as test.

    Users with fewer than `min_rows` positives stay wholly in train. Test rows whose user or
    item is absent from train go to `split.cold` (not evaluated). `threshold=None` keeps every
    row (data that is implicit already). The positives are 0/1 (the protocol's, whatever the weights
    default of `to_implicit`), so every model sees the same training pairs.
    """
    positives = to_implicit(data, threshold=threshold, weights="binary")
    return last_fraction(positives, frac=frac, min_rows=min_rows)


def ranking_metrics_for(model: Estimator, test: Interactions, ks: Sequence[int] = (10, 20),
                        batch_size: int = 1024, *,
                        exclude_seen: bool = True) -> tuple[dict[str, float], dict[str, int]]:
    """Full-catalogue metrics of a fitted model on `test` (raw ids mapped onto its vocabularies).

    Returns (metrics, counts): counts has the test rows used and those dropped because their
    user or item is unknown to the model. `exclude_seen=False` lets training items be
    recommended and hit (repeat purchases as next purchases, `evaluate --include-seen`).
    """
    moved, known = test.reindex(model.users_, model.items_)
    user_known = torch.from_numpy(model.users_.index(test.users.ids.gather(test.user_idx.numpy()))) >= 0
    counts = {"rows": len(moved), "dropped_unknown_item": int((user_known & ~known).sum()),
              "dropped_unknown_user": int((~user_known).sum())}
    test_csr = build_csr(moved.user_idx, moved.item_idx, model.n_users)
    users = torch.unique(moved.user_idx)
    none = torch.empty(0, dtype=torch.int64)
    exclude = model.seen_ if exclude_seen else build_csr(none, none, model.n_users)
    metrics = evaluate_ranking(model.score, users, exclude, test_csr, model.n_items, ks=ks,
                               batch_size=batch_size)
    return metrics, counts


def compare_ranking_models(models: Sequence[tuple[str, Estimator]], train: Interactions, test: Interactions,
                           ks: Sequence[int] = (10, 20), batch_size: int = 1024, *,
                           title: str = "Top-N recommendation", recommend_k: int = 20) -> Report:
    """Fit each model on `train`, evaluate on `test`; one report row per model.

    Columns: NDCG/Recall/MAP/HitRate@K for each K, MRR, coverage@K, users evaluated, fit
    seconds, and the seconds `recommend` takes for top-`recommend_k` of every training user.
    Test rows whose item (or user) the model never saw are dropped and counted in the notes.
    """
    report = Report(title)
    for label, model in models:
        tic = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - tic
        metrics, counts = ranking_metrics_for(model, test, ks, batch_size)
        tic = time.perf_counter()
        model.recommend(model.users_.ids.to_list(), k=recommend_k)
        rec_s = time.perf_counter() - tic
        row: dict[str, Any] = {"model": label}
        for name in _REPORTED:
            row |= {f"{name}@{k}": metrics[f"{name}@{k}"] for k in ks}
        row["mrr"] = metrics["mrr"]
        row |= {f"coverage@{k}": metrics[f"coverage@{k}"] for k in ks}
        row |= {"users": int(metrics["users"]), "fit s": fit_s, f"top-{recommend_k} s": rec_s}
        report.rows.append(row)
        if counts["dropped_unknown_item"] or counts["dropped_unknown_user"]:
            report.notes.append(f"{label}: {counts['dropped_unknown_item']} test rows dropped (item unseen in "
                                f"train), {counts['dropped_unknown_user']} (user unseen); {counts['rows']} used")
    return report
