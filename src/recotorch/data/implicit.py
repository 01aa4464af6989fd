"""Implicit feedback: which pairs are positives, and how strongly each one counts.

`to_implicit` returns an ordinary `Interactions` with one row per (user, item) pair (the one
duplicate policy, `recotorch.data.aggregate`) whose `rating` holds the **confidence** every
implicit model uses (EASE, item-kNN, RP3beta, ALS, ...), chosen by `weights`:

- "binary": 1 per pair (every interaction counts the same);
- "count": the number of rows of the pair (repeat purchases, plays logged one row each);
- "sum": the sum of the pair's values (quantities, play counts or minutes in a column); each
  row counts 1 when there is no value column, so "sum" is then "count";
- "log1p": log(1 + sum), the sum damped so that a heavy tail (a few pairs played thousands of
  times) does not drown the rest.

The default (`DEFAULT_WEIGHTS`) is "log1p", and a model may choose its own
(`Estimator.DEFAULT_WEIGHTS`, which `recotorch fit` uses when --weights is not given): ALS
takes "count". On `benchmarks/weights.py` (ml-100k, two purchase logs with repeats, a
play-count log; new items, and next purchases with repeats allowed; `benchmarks/results/weights.md`)
log1p had the best geometric mean of NDCG@10 / binary over every log, protocol and model
(1.09x; its worst case 0.99x; count 1.09x, worst 0.91x, item-kNN on new items; sum 1.08x, worst
0.76x). For ALS alone count was never below binary and best on the purchase logs (1.21-1.29x on
new items, 1.14-1.22x on next purchases; log1p 1.04x and 1.15x). EASE and item-kNN learn their
links from 0/1 pairs and use the weights in each user's row (`links_from`).

Vocabularies are kept as they are (users or items left without rows stay in them), so splits
and models work unchanged. `confidence(data)` is what a model calls on its training data:
the weights of data that went through `to_implicit`, else `to_implicit` with the default.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal, get_args

import torch

from recotorch.data.interactions import Interactions

__all__ = ["DEFAULT_WEIGHTS", "WEIGHTS", "Weights", "confidence", "implicit_weights", "to_implicit"]

Weights = Literal["binary", "count", "sum", "log1p"]
WEIGHTS: tuple[str, ...] = get_args(Weights)
DEFAULT_WEIGHTS: Weights = "log1p"  # chosen on benchmarks/results/weights.md (module docstring)
WEIGHTS_HELP = {
    "binary": "1 per (user, item) pair",
    "count": "the number of rows of the pair (repeat purchases / plays)",
    "sum": "the sum of the pair's values (the rating/quantity column; 1 a row without one)",
    "log1p": "log(1 + sum): the sum, damped for heavy tails",
}


def check_weights(weights: str) -> Weights:
    """`weights` if it is one of `WEIGHTS`, else ValueError naming the choices."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    return weights  # type: ignore[return-value]


def implicit_weights(pairs: Interactions, weights: Weights) -> torch.Tensor:
    """Confidence (n,) float32 of each row of aggregated `pairs` (one row per pair) under `weights`."""
    check_weights(weights)
    if weights == "binary":
        return torch.ones(len(pairs))
    if weights == "count":
        return pairs.row_counts()
    total = pairs.value_sums()
    total = pairs.row_counts() if total is None else total.float()
    if weights == "sum":
        return total
    if bool((total <= -1).any()):
        raise ValueError("weights='log1p' needs values > -1 (log(1 + sum)); a pair's values sum to "
                         f"{float(total.min()):g}")
    return torch.log1p(total)


def to_implicit(data: Interactions, threshold: float | None = None,
                weights: Weights = DEFAULT_WEIGHTS) -> Interactions:
    """Implicit feedback from `data`: one row per distinct (user, item), its confidence in `rating`.

    threshold: keep only pairs whose (latest) rating is >= threshold (None keeps every pair).
    weights: "binary", "count", "sum" or "log1p" (module docstring). Rows of the same pair are
    aggregated first (`recotorch.data.aggregate`: latest time, row count, value sum), so data
    that was read with `duplicates="keep"` gives the same result as aggregated data.
    `meta["implicit"]` records threshold, weights, rows in, pairs and pairs kept.

    >>> positives = to_implicit(ml100k, threshold=4, weights="binary")  # ratings 4 and 5 -> weight 1
    """
    check_weights(weights)
    if threshold is not None and data.rating is None:
        raise ValueError("these interactions have no ratings to threshold")
    pairs = data.aggregated(announce=False)  # what is merged here was reported when the data was built
    rows_in = pairs.meta.get("rows_in", len(data))
    n_pairs = len(pairs)
    if threshold is not None:
        pairs = pairs.subset(pairs.rating >= threshold)  # type: ignore[operator]
    value = implicit_weights(pairs, weights)
    meta = {**pairs.meta, "implicit": {"threshold": threshold, "weights": weights, "rows_in": rows_in,
                                       "pairs": n_pairs, "pairs_kept": len(pairs)}}
    return replace(pairs, rating=value, meta=meta)


def confidence(data: Interactions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(user_idx, item_idx, confidence) of each distinct pair of `data`, sorted by user then item.

    Data from `to_implicit` keeps its weights (summed if rows repeat); any other data is made
    implicit with `DEFAULT_WEIGHTS` first. The confidences are divided by their mean, so they
    average 1 whichever weights or units (quantities, seconds) they came from, and a model's
    regularisation means the same on binary and weighted data (binary data stays all ones).
    What every implicit model learns from.
    """
    if "implicit" not in data.meta:
        data = to_implicit(data)
    value = data.rating if data.rating is not None else torch.ones(len(data))
    keys, inverse = torch.unique(data.user_idx * max(data.n_items, 1) + data.item_idx, return_inverse=True)
    total = torch.zeros(keys.numel(), dtype=torch.float64).index_add_(0, inverse, value.double())
    mean = float(total.mean()) if total.numel() else 1.0
    if not mean > 0:
        raise ValueError(f"implicit confidences must average above 0 (they average {mean:g})")
    return keys // max(data.n_items, 1), keys % max(data.n_items, 1), (total / mean).float()
