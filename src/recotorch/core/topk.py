"""Top-k with one tie rule (the lower item index first among equal scores), used by every layer.

`torch.topk` is called here and nowhere else in recotorch: `top_k` is the ranked answer with the
deterministic tie rule; `largest` is the raw per-row selection (values and indices, ties in any
order) for places where only the set matters, e.g. keeping an item's strongest links.
"""

from __future__ import annotations

from typing import Protocol

import torch


class RowSets(Protocol):
    """Items to exclude per row, in CSR form (`recotorch.data.interactions.CSR` is one)."""

    indptr: torch.Tensor
    indices: torch.Tensor

    def entries(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(position in `rows` of each entry, index of the entry in `indices`)."""
        ...


def largest(scores: torch.Tensor, k: int, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of the k largest entries along `dim`, best first; ties in no promised order."""
    return torch.topk(scores, k, dim=dim)


def top_k(
    scores: torch.Tensor,
    k: int,
    exclude: RowSets | None = None,
    rows: torch.Tensor | None = None,
    *,
    inplace: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best items per row, best first, with deterministic tie-breaking.

    scores: (B, n_items); exclude: CSR (`RowSets`) of items to skip (e.g. seen items) per user; rows: (B,)
    row of `exclude` for each score row (default arange(B)). Returns (indices (B, k) int64,
    scores (B, k)) on the scores' device. Excluded items and -inf scores are never recommended;
    slots that have no candidate left get index -1 and score -inf. NaN scores raise ValueError.
    `inplace=True` lets the function write the exclusions into `scores` instead of a copy.

    Tie-breaking: among equal scores the lower item index comes first. `torch.topk` alone does
    not promise which of several tied items it returns, so it is asked for k + 1 values: where
    the k-th and (k+1)-th differ, its k items are the unique answer; the rare rows where they
    tie take an exact slower path. The result is independent of batch composition.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be (B, n_items), got shape {tuple(scores.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    b, n_items = scores.shape
    if not scores.is_floating_point():
        scores = scores.double()
    elif not inplace:
        scores = scores.detach().clone()
    if exclude is not None:
        rows = torch.arange(b) if rows is None else rows
        if rows.numel() != b:
            raise ValueError(f"rows has {rows.numel()} entries for {b} score rows")
        if b == 1:  # one row (a served request): slice its entries directly
            r = int(rows[0])
            cols = exclude.indices[int(exclude.indptr[r]) : int(exclude.indptr[r + 1])]
            scores[0].index_fill_(0, cols.to(scores.device), -torch.inf)
        else:
            which, pos = exclude.entries(rows)
            scores[which.to(scores.device), exclude.indices[pos].to(scores.device)] = -torch.inf
    kk = min(k, n_items)
    if b == 0 or kk == 0:
        idx = torch.empty((b, kk), dtype=torch.int64, device=scores.device)
        vals = scores.new_empty((b, kk))
    else:
        vals, idx = torch.topk(scores, min(kk + 1, n_items), dim=1)  # NaN ranks above any number
        if torch.isnan(vals[:, 0]).any():
            raise ValueError("scores contain NaN")
        if kk < n_items:
            tie = vals[:, kk] == vals[:, kk - 1]  # k-th ties (k+1)-th
            vals, idx = vals[:, :kk], idx[:, :kk]
            if bool(tie.any()):
                tied = tie.nonzero().squeeze(1)
                idx[tied] = _exact_top_indices(scores[tied], kk)
                vals[tied] = scores[tied].gather(1, idx[tied])
        idx, order = idx.sort(dim=1)  # by item index, then stably by score: ties keep the lower index first
        vals = vals.gather(1, order)
    vals, order = torch.sort(vals, dim=1, descending=True, stable=True)
    idx = idx.gather(1, order).masked_fill(vals == -torch.inf, -1)
    if kk < k:  # catalogue smaller than k: pad the missing slots
        pad = k - kk
        idx = torch.cat([idx, idx.new_full((b, pad), -1)], dim=1)
        vals = torch.cat([vals, vals.new_full((b, pad), -torch.inf)], dim=1)
    return idx, vals


def _exact_top_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) indices of the k best per row, lower index first among ties at the k-th value."""
    kth = torch.topk(scores, k, dim=1).values[:, -1:]  # (B, 1) the k-th best value
    above = scores > kth  # (B, n_items), fewer than k per row
    tied = scores == kth
    need = k - above.sum(dim=1, keepdim=True)  # (B, 1) >= 1 tied slots to fill
    tied_rank = torch.cumsum(tied, dim=1, dtype=torch.int32)  # 1-based rank among ties
    take = above | (tied & (tied_rank <= need))  # exactly k per row
    return take.nonzero()[:, 1].view(scores.shape[0], k)  # ascending item index within each row
