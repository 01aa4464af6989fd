"""Shared maths, written once: the rating squash, logit targets, the ridge solve and the ALS user solve.

All functions are batched over users: histories are padded (B, L) index tensors with -1 (or a
mask) marking padding, so no Python loop runs over users.
"""

from __future__ import annotations

import torch

LOGIT_EPS = 0.02  # targets are clipped to (eps, 1 - eps) of the range before the logit

RatingSpan = tuple[float, float] | None


def squash(raw: torch.Tensor, rating_range: RatingSpan, *, inplace: bool = False) -> torch.Tensor:
    """The sigmoid onto (lo, hi) of rating models; the identity when there is no range.

    `inplace=True` overwrites `raw` (saves a (B, n_items) temporary when scoring catalogues).
    """
    if rating_range is None:
        return raw
    lo, hi = rating_range
    if inplace:
        return raw.sigmoid_().mul_(hi - lo).add_(lo)
    return torch.sigmoid(raw) * (hi - lo) + lo


def logit_targets(r: torch.Tensor, rating_range: RatingSpan) -> torch.Tensor:
    """The inverse of `squash`: ratings mapped to logits (clipped to (eps, 1 - eps) of the range first)."""
    if rating_range is None:
        return r.clone()
    lo, hi = rating_range
    y = ((r - lo) / (hi - lo)).clamp(LOGIT_EPS, 1 - LOGIT_EPS)
    return torch.log(y / (1 - y))


def auto_rating_range(lo: float, hi: float) -> tuple[float, float]:
    """The sigmoid's output range for ratings lo..hi: (lo - span/4, hi + span/8), e.g. 1-5 stars -> (0, 5.5)."""
    span = hi - lo if hi > lo else 1.0
    return (lo - span / 4, hi + span / 8)


def auto_range_data_scale(rating_range: tuple[float, float]) -> tuple[float, float]:
    """The ratings lo..hi that `auto_rating_range` mapped to `rating_range` (for files saved without them)."""
    lo, hi = rating_range
    s = (hi - lo) / 1.375
    return (lo + s / 4, hi - s / 8)


def ridge_solve(a: torch.Tensor, z: torch.Tensor, prior: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """argmin_x |a x - z|^2 + (x - mean)^T P (x - mean), batched: returns (B, D).

    a (B, L, D): design rows, zero where padded; z (B, L): targets, zero where padded; prior: the
    precision P, a diagonal (D,) or full matrices (B, D, D); mean (B, D) or (D,). Differentiable.
    """
    if prior.dim() == 1:
        gram = a.transpose(1, 2) @ a + torch.diag(prior)  # (B, D, D)
        rhs = torch.einsum("bld,bl->bd", a, z) + prior * mean
    else:
        gram = a.transpose(1, 2) @ a + prior
        rhs = torch.einsum("bld,bl->bd", a, z) + (prior @ mean.unsqueeze(-1)).squeeze(-1)
    return torch.linalg.solve(gram, rhs)


def ridge_fold_in(q: torch.Tensor, b: torch.Tensor, safe: torch.Tensor, r: torch.Tensor, mask: torch.Tensor,
                  mu: torch.Tensor, prior: torch.Tensor, rating_range: RatingSpan) -> torch.Tensor:
    """[p, b_u] (B, d+1) of a rating factor model's closed-form fold-in; differentiable in q, b, mu, prior.

    q (n_items, d), b (n_items,): the frozen item side; safe (B, L): item indices (padding any valid
    index); r (B, L) ratings; mask (B, L) which entries count; mu (B, d+1) or (d+1,) prior means;
    prior (d+1,) the diagonal prior precision. Targets are the logits of the ratings on
    `rating_range` minus the item bias (the ratings minus the item bias without a range).
    """
    a = torch.cat([q[safe], torch.ones(*safe.shape, 1, dtype=q.dtype, device=q.device)], -1) * mask[..., None]
    z = (r - b[safe]) if rating_range is None else logit_targets(r, rating_range) - b[safe]
    return ridge_solve(a, z * mask, prior, mu)


def als_solve(other: torch.Tensor, idx: torch.Tensor, r: torch.Tensor, alpha: float, reg: float) -> torch.Tensor:
    """The ALS row solve (Hu, Koren & Volinsky) for padded histories, batched: returns (B, dim).

    x = (Y^T Y + reg I + sum_l alpha r_l y_l y_l^T)^-1 sum_l (1 + alpha r_l) y_l over the history's
    items l; other (n, dim) is Y; idx (B, L) indices into it, -1 = padding; r (B, L) weights.
    """
    mask = (idx >= 0).float()
    a = other[idx.clamp(min=0)] * mask[..., None]  # (B, L, dim)
    conf = alpha * r * mask
    gram = other.T @ other + reg * torch.eye(other.shape[1]) + torch.einsum("bl,bld,ble->bde", conf, a, a)
    return torch.linalg.solve(gram, torch.einsum("bl,bld->bd", (1.0 + conf) * mask, a))


def pad_rows(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, which: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per entry of `which` (B,), its (cols, values) from the COO lists, padded: (B, L) with -1 / 0."""
    size = max(int(rows.max()) if rows.numel() else 0, int(which.max()) if which.numel() else 0) + 1
    pos = torch.full((size,), -1, dtype=torch.int64)
    pos[which] = torch.arange(which.numel())
    b = pos[rows]
    keep = b >= 0
    b, cols, values = b[keep], cols[keep], values[keep]
    order = torch.argsort(b, stable=True)
    b, cols, values = b[order], cols[order], values[order]
    counts = torch.bincount(b, minlength=which.numel())
    slot = torch.arange(b.numel()) - (torch.cumsum(counts, 0) - counts)[b]
    width = int(counts.max()) if b.numel() else 0
    idx = torch.full((which.numel(), width), -1, dtype=torch.int64)
    val = torch.zeros(which.numel(), width)
    idx[b, slot], val[b, slot] = cols, values.float()
    return idx, val
