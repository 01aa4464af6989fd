"""Explicit ratings -> implicit feedback: binarise at a threshold, or keep counts/values as confidence.

The result is an ordinary `Interactions` whose `rating` column holds the implicit weight
(1 for "binary"), with one row per distinct (user, item) pair. Vocabularies are kept as they
are (users or items left without rows stay in them), so splits and models work unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch

from recotorch.data.interactions import Interactions

__all__ = ["Weights", "to_implicit"]

Weights = Literal["binary", "count", "value"]


def to_implicit(data: Interactions, threshold: float | None = None, weights: Weights = "binary") -> Interactions:
    """Implicit feedback from `data`: one row per distinct (user, item), weight in `rating`.

    threshold: keep only rows with rating >= threshold (None keeps every row).
    weights: "binary" -> 1 per pair; "count" -> number of (kept) rows of the pair;
        "value" -> sum of the pair's (kept) ratings, e.g. play counts or dwell times.
    Duplicate rows are merged: the pair keeps its latest timestamp and its place of first
    appearance. `meta["implicit"]` records threshold, weights and row counts.

    >>> positives = to_implicit(ml100k, threshold=4)  # ratings 4 and 5 -> weight 1
    """
    if weights not in ("binary", "count", "value"):
        raise ValueError(f"weights must be 'binary', 'count' or 'value', got {weights!r}")
    if (threshold is not None or weights == "value") and data.rating is None:
        raise ValueError("these interactions have no ratings to threshold or weigh")
    rows_in = len(data)
    if threshold is not None:
        data = data.subset(data.rating >= threshold)  # type: ignore[operator]
    key = data.user_idx * max(data.n_items, 1) + data.item_idx
    uniq, inverse = torch.unique(key, return_inverse=True)  # (n_pairs,), (n,)
    n_pairs = uniq.numel()
    position = torch.arange(len(data))
    first = torch.full((n_pairs,), len(data), dtype=torch.int64).scatter_reduce(
        0, inverse, position, reduce="amin")  # first row of each pair
    if weights == "binary":
        value = torch.ones(n_pairs)
    elif weights == "count":
        value = torch.bincount(inverse, minlength=n_pairs).float()
    else:
        value = torch.zeros(n_pairs).index_add_(0, inverse, data.rating.float())  # type: ignore[union-attr]
    timestamp = None
    if data.timestamp is not None:
        timestamp = torch.full((n_pairs,), torch.iinfo(torch.int64).min).scatter_reduce(
            0, inverse, data.timestamp, reduce="amax")
    order = torch.argsort(first)  # pairs in order of first appearance
    meta = {**data.meta, "implicit": {"threshold": threshold, "weights": weights, "rows_in": rows_in,
                                      "rows_kept": len(data), "pairs": n_pairs}}
    rows = first[order]
    return replace(data, user_idx=data.user_idx[rows], item_idx=data.item_idx[rows], rating=value[order],
                   timestamp=None if timestamp is None else timestamp[order], meta=meta)
