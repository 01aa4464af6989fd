"""The one duplicate policy: rows with the same (user, item) become one pair.

Every constructor of `Interactions` from rows (`read_interactions`, `Interactions.from_frame`,
`Interactions.aggregated()`, `to_implicit`) applies it, so the same rows give the same pairs
whichever way they came in:

- a pair keeps its **latest** row (largest timestamp; the last in row order on ties or without
  timestamps), at that row's position: its `rating` is the latest value (what rating models
  learn: a re-rating replaces the old one) and its `timestamp` the latest time;
- `count` is the number of rows merged into the pair and `value_sum` the sum of their values
  (the rating / quantity / play-count column), which implicit models turn into a confidence
  (`recotorch.data.implicit`, `--weights`);
- `meta` records `rows_in`, `pairs_out` and `duplicates_aggregated` (= rows_in - pairs_out), and
  when any rows were merged one line says so at INFO on the "recotorch" logger (the CLI shows
  INFO by default).

Vectorised: one `torch.unique` of a 64-bit pair key; when every pair is distinct nothing else
is done and `count` / `value_sum` stay None (meaning 1 and `rating`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from recotorch.data.interactions import Interactions

__all__ = ["aggregate", "describe"]

log = logging.getLogger("recotorch")


def aggregate(data: Interactions, *, value_name: str = "rating", announce: bool = True) -> Interactions:
    """`data` with one row per (user, item) pair (see the module docstring); `meta` records the counts.

    value_name: how the value column is called in the log line (e.g. "qty").
    announce: log the one line when rows were merged (False when a caller reports it itself).
    Already-aggregated input comes back with the same pairs (counts and sums are carried on).
    """
    n = len(data)
    key = data.user_idx * max(data.n_items, 1) + data.item_idx
    uniq, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
    n_pairs = uniq.numel()
    if n_pairs == n:
        return replace(data, meta={**data.meta, **_counts(n if data.count is None else _rows(data), n_pairs)})
    rows_in = _rows(data)
    position = torch.arange(n)
    if data.timestamp is not None:  # rows sorted by (pair, time, position): each pair's last row is its latest
        by_time = torch.argsort(data.timestamp, stable=True)
        ordered = by_time[torch.argsort(inverse[by_time], stable=True)]
        latest = ordered[torch.cumsum(counts, 0) - 1]  # (n_pairs,) row index of each pair's latest row
    else:
        latest = torch.zeros(n_pairs, dtype=torch.int64).scatter_reduce_(0, inverse, position, reduce="amax",
                                                                         include_self=False)
    keep = torch.sort(latest).values  # pairs at their latest row's position
    pair_of = inverse[keep]
    row_count = data.count if data.count is not None else torch.ones(n, dtype=torch.int64)
    total_count = torch.zeros(n_pairs, dtype=torch.int64).index_add_(0, inverse, row_count.long())
    value_sum = None
    if data.rating is not None:
        values = data.value_sum if data.value_sum is not None else data.rating
        value_sum = torch.zeros(n_pairs, dtype=torch.float64).index_add_(0, inverse, values.double()).float()
    out = replace(
        data.subset(keep),
        count=total_count[pair_of],
        value_sum=None if value_sum is None else value_sum[pair_of],
    )
    counted = _counts(rows_in, n_pairs)
    out = replace(out, meta={**data.meta, **counted})
    if announce:
        log.info("%s", describe(out.meta, source=_short(data.source), value_name=value_name,
                                   has_value=data.rating is not None, has_time=data.timestamp is not None))
    return out


def describe(meta: dict, *, source: str, value_name: str = "rating", has_value: bool = True,
             has_time: bool = True) -> str:
    """The one line that reports an aggregation, e.g. for the CLI."""
    kept = ["its row count"] + ([f"the sum of its {value_name}"] if has_value else [])
    kept.append("its latest time" if has_time else "its last row")
    latest = f"; rating models use the latest {value_name}" if has_value else ""
    return (f"{source}: {meta['rows_in']:,} rows -> {meta['pairs_out']:,} (user, item) pairs: "
            f"{meta['duplicates_aggregated']:,} repeat rows aggregated (each pair keeps {', '.join(kept)}{latest})")


def _rows(data: Interactions) -> int:
    """Rows behind `data` (pairs already aggregated count their merged rows)."""
    return len(data) if data.count is None else int(data.count.sum())


def _counts(rows_in: int, pairs: int) -> dict[str, int]:
    return {"rows_in": rows_in, "pairs_out": pairs, "duplicates_aggregated": rows_in - pairs}


def _short(source: str) -> str:
    from pathlib import Path

    return Path(source).name if source not in ("memory", "") else "interactions"
