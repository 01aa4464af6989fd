"""Rating and full-catalogue ranking metrics, vectorised over users.

Ranking conventions (binary relevance; `rel_u` = the distinct relevant items of user u):
- recall@K    = hits@K / |rel_u|  (plain recall; can't reach 1 when |rel_u| > K).
- precision@K = hits@K / K        (empty `-1` slots count as misses).
- ndcg@K      = DCG@K / IDCG@K, gain 1 / log2(rank + 1), IDCG over min(|rel_u|, K) hits.
- map@K       = sum_{hit ranks r <= K} precision@r / min(|rel_u|, K).
- hit_rate@K  = 1 if any hit in the top K else 0.
- mrr@K / mrr = 1 / rank of the first hit in the top K / in the whole list, 0 if none.
- coverage@K  = distinct items in the top K over all evaluated users / n_items.
Users with no relevant items are left out of every average (and of coverage); "users" counts
the users that were evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from recotorch.core.topk import top_k
from recotorch.data.interactions import CSR

__all__ = [
    "evaluate_ranking",
    "mae",
    "ranking_metrics",
    "ranking_metrics_per_user",
    "rmse",
    "top_k",
]

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]


# ---- rating metrics ------------------------------------------------------------------------
def _pair(pred: ArrayLike, target: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    # np.array copies: arrays from Polars are read-only, which torch warns about on every evaluation
    p = torch.as_tensor(np.array(pred) if not isinstance(pred, torch.Tensor) else pred)
    t = torch.as_tensor(np.array(target) if not isinstance(target, torch.Tensor) else target)
    p, t = p.detach().cpu().double(), t.detach().cpu().double()
    if p.shape != t.shape:  # no broadcasting: (n,1) vs (n,) would silently give an (n,n) error
        raise ValueError(f"pred has shape {tuple(p.shape)} but target has {tuple(t.shape)}")
    if p.numel() == 0:
        raise ValueError("cannot compute an error over zero predictions")
    return p, t


def rmse(pred: ArrayLike, target: ArrayLike) -> float:
    """Root mean squared error; `pred` and `target` must have the same shape."""
    p, t = _pair(pred, target)
    return float(torch.sqrt(torch.mean((p - t) ** 2)))


def mae(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean absolute error; `pred` and `target` must have the same shape."""
    p, t = _pair(pred, target)
    return float(torch.mean(torch.abs(p - t)))


# ---- ranking metrics -----------------------------------------------------------------------
def _hits(
    recommended: torch.Tensor, relevant: CSR, n_items: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(hit matrix (U, k) bool, distinct relevant items per row (U,) int64)."""
    n_rows = recommended.shape[0]
    if relevant.n_rows != n_rows:
        raise ValueError(f"relevant has {relevant.n_rows} rows, recommended has {n_rows}")
    if recommended.numel() and int(recommended.max()) >= n_items:
        raise ValueError("a recommended index is >= n_items")
    if recommended.numel() and int(recommended.min()) < -1:
        raise ValueError("recommended indices must be item indices or -1 (empty slot)")
    srt = recommended.sort(dim=1).values
    if ((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)).any():
        raise ValueError("an item is recommended twice to the same user")
    row_of = torch.repeat_interleave(torch.arange(n_rows), relevant.row_lengths())
    keys = torch.unique(row_of * n_items + relevant.indices)  # sorted, deduplicated (row, item)
    n_rel = torch.bincount(keys // n_items, minlength=n_rows)  # (U,)
    query = torch.arange(n_rows).unsqueeze(1) * n_items + recommended  # (U, k)
    pos = torch.searchsorted(keys, query).clamp(max=max(keys.numel() - 1, 0))
    hit = (keys[pos] == query) if keys.numel() else torch.zeros_like(query, dtype=torch.bool)
    return hit & (recommended >= 0), n_rel


def ranking_metrics_per_user(
    recommended: torch.Tensor,
    relevant: CSR,
    ks: Sequence[int] = (10, 20),
    *,
    n_items: int,
) -> dict[str, torch.Tensor]:
    """Per-user ranking metrics: each value is (U,) float64, NaN for users with no relevant item.

    recommended: (U, k) item indices, best first, -1 = empty slot; relevant: CSR with U rows.
    Keys: recall@K, precision@K, ndcg@K, map@K, hit_rate@K, mrr@K for K in ks, plus "mrr"
    over the whole list and "n_relevant" (U,) int64. Average with `t[n_relevant > 0].mean()`.
    """
    recommended = recommended.detach().cpu().to(torch.int64)
    width = recommended.shape[1]
    if not ks or min(ks) < 1 or max(ks) > width:
        raise ValueError(f"every K in ks={tuple(ks)} must be in 1..{width} (recommended width)")
    hit, n_rel = _hits(recommended, relevant, n_items)
    hitf = hit.double()  # (U, k)
    ranks = torch.arange(1, width + 1, dtype=torch.float64)  # (k,)
    discount = 1.0 / torch.log2(ranks + 1.0)  # (k,)
    ideal = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(discount, 0)])  # (k+1,)
    cum_hits = torch.cumsum(hitf, dim=1)  # (U, k)
    first = torch.where(hit.any(1), hitf.argmax(1) + 1.0, torch.inf)  # (U,) 1-based
    rel = n_rel.double()
    nan = torch.full_like(rel, torch.nan)
    ok = n_rel > 0
    out: dict[str, torch.Tensor] = {}

    def per_user(value: torch.Tensor) -> torch.Tensor:
        return torch.where(ok, value, nan)

    for k in ks:
        hits_k = cum_hits[:, k - 1]  # (U,)
        capped = torch.clamp(rel, max=k)  # min(|rel|, K)
        out[f"recall@{k}"] = per_user(hits_k / rel)
        out[f"precision@{k}"] = per_user(hits_k / k)
        dcg = (hitf[:, :k] * discount[:k]).sum(1)
        out[f"ndcg@{k}"] = per_user(dcg / ideal[capped.long()])
        ap = (hitf[:, :k] * cum_hits[:, :k] / ranks[:k]).sum(1)  # sum of precision@r at hits
        out[f"map@{k}"] = per_user(ap / capped)
        out[f"hit_rate@{k}"] = per_user((hits_k > 0).double())
        out[f"mrr@{k}"] = per_user(torch.where(first <= k, 1.0 / first, 0.0))
    out["mrr"] = per_user(1.0 / first)  # 1 / inf = 0 when nothing is hit
    out["n_relevant"] = n_rel
    return out


def ranking_metrics(
    recommended: torch.Tensor,
    relevant: CSR,
    ks: Sequence[int] = (10, 20),
    *,
    n_items: int,
) -> dict[str, float]:
    """Mean ranking metrics over users with >= 1 relevant item, plus coverage@K and "users".

    recommended: (U, k) item indices, best first, -1 = empty slot; relevant: CSR with U rows
    aligned with `recommended`. Keys as in `ranking_metrics_per_user` (minus n_relevant), plus
    coverage@K (distinct items in the evaluated users' top K / n_items) and users (count).
    """
    per_user = ranking_metrics_per_user(recommended, relevant, ks, n_items=n_items)
    ok = per_user.pop("n_relevant") > 0
    n_ok = int(ok.sum())
    result = {name: float(v[ok].mean()) if n_ok else float("nan") for name, v in per_user.items()}
    rec = recommended.detach().cpu().to(torch.int64)[ok]
    for k in ks:
        top = rec[:, :k]
        result[f"coverage@{k}"] = torch.unique(top[top >= 0]).numel() / n_items
    result["users"] = float(n_ok)
    return dict(sorted(result.items(), key=lambda kv: _key_order(kv[0])))


def _key_order(name: str) -> tuple[str, int]:
    base, _, k = name.partition("@")
    return base, int(k) if k else 0


def evaluate_ranking(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    users: torch.Tensor,
    train_csr: CSR,
    test_csr: CSR,
    n_items: int,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
) -> dict[str, float]:
    """Full-catalogue ranking evaluation in bounded memory.

    score_fn maps user indices (b,) to scores (b, n_items). Users without test items are
    skipped (they would be excluded anyway); the rest are scored `batch_size` at a time, their
    train items masked, and the top max(ks) compared with their test items. Given the same
    scores per user, the result does not depend on `batch_size` (ties are broken by item index,
    see `top_k`). Test items that are also train items are masked, so they can never be hit
    but still count in |rel|.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    users = users.detach().cpu().to(torch.int64).reshape(-1)
    users = users[test_csr.row_lengths()[users] > 0]  # (U,)
    width = max(ks)
    recs = []
    with torch.no_grad():
        for start in range(0, users.numel(), batch_size):
            chunk = users[start : start + batch_size]  # (b,)
            scores = score_fn(chunk)
            if tuple(scores.shape) != (chunk.numel(), n_items):
                raise ValueError(f"score_fn returned shape {tuple(scores.shape)}, expected "
                                 f"{(chunk.numel(), n_items)}")
            recs.append(top_k(scores, width, exclude=train_csr, rows=chunk)[0].cpu())
    recommended = torch.cat(recs) if recs else torch.empty((0, width), dtype=torch.int64)
    relevant = test_csr.select(users)  # rows aligned with `users` / `recommended`
    return ranking_metrics(recommended, relevant, ks, n_items=n_items)
