"""Item neighbourhood on baseline residuals (Koren 2010, "KNNBaseline"): the classic strong rating model.

    r(u, i) = b(u, i) + sum_j s(i, j) (r(u, j) - b(u, j)) / sum_j s(i, j)

b(u, i) = mean + b_u + b_i are the regularised biases of `BiasBaseline`; j runs over the `k`
items most similar to i among those u rated (positive similarities only; fewer than `min_k`
such neighbours leaves the baseline). The similarity is the shrunk Pearson correlation of the
baseline residuals over the users who rated both items:

    s(i, j) = (n_ij - 1) / (n_ij - 1 + shrinkage) * sum_u e_ui e_uj / sqrt(sum_u e_ui^2 sum_u e_uj^2)

Memory: each item keeps its `neighbours` most similar items (12 bytes per link); fitting builds
dense blocks of about 2**24 cells, never the whole item-item matrix, so a large catalogue fits.
With `neighbours` >= n_items - 1 the model is exact (the k nearest among all the user's items).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from recotorch.core.topk import largest, top_k
from recotorch.data.interactions import Interactions
from recotorch.models.base import Estimator, register
from recotorch.models.baselines import fit_biases, partial_bias
from recotorch.models.itemknn import BLOCK_CELLS, coo
from recotorch.train.config import Params, int_range, log_uniform, param


@register
class KNNBaseline(Estimator):
    """Rating prediction: biases plus a similarity-weighted mean of the user's residuals on the nearest items.

    >>> KNNBaseline(k=40).fit(train).predict(["196"], ["242"]).values
    """

    name = "knn_baseline"
    task = "rating"
    CAPABILITIES = frozenset({"similar_items", "item_biases", "user_biases"})
    TEST_PARAMS: ClassVar[dict[str, Any]] = {"k": 5, "neighbours": 10}

    @dataclass
    class Config(Params):
        k: int = param(40, ge=1, help="neighbours averaged per prediction", tune=int_range(5, 100, log=True))
        min_k: int = param(1, ge=1, help="fewer neighbours than this: predict the baseline")
        shrinkage: float = param(100.0, ge=0, help="pulls similarities of items with few common users to 0",
                                 tune=log_uniform(1.0, 500.0))
        neighbours: int = param(400, ge=1, help="similar items kept per item (memory: 12 bytes each)",
                                tune=int_range(50, 1000, log=True))
        reg_user: float = param(15.0, ge=0, help="baseline: pseudo-count pulling user biases to zero",
                                tune=log_uniform(1.0, 50.0))
        reg_item: float = param(10.0, ge=0, help="baseline: pseudo-count pulling item biases to zero",
                                tune=log_uniform(1.0, 50.0))
        n_iters: int = param(10, ge=1, help="baseline: alternating passes")

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        if train.rating is None:
            raise ValueError(f"{type(self).__name__} needs ratings; these interactions have none")
        self.mean_, self.user_bias_, self.item_bias_ = fit_biases(
            train, self.reg_user, self.reg_item, self.n_iters)
        self.range_ = (float(train.rating.min()), float(train.rating.max()))
        u, i = train.user_idx, train.item_idx
        resid = train.rating.float() - self.mean_ - self.user_bias_[u] - self.item_bias_[i]
        order = torch.argsort(u * train.n_items + i)
        self.keys_ = (u * train.n_items + i)[order]  # sorted (user, item) keys of the training pairs
        self.resid_ = resid[order]
        width = max(1, min(self.neighbours, train.n_items - 1))
        self.nbr_idx_, self.nbr_sim_ = _neighbours(u, i, resid, train.n_users, train.n_items, self.shrinkage, width)

    # ---- scoring ----------------------------------------------------------------------------
    def score(self, user_idx: torch.Tensor, item_idx: torch.Tensor | None = None) -> torch.Tensor:
        if item_idx is None:
            return torch.cat([self._score_all(chunk) for chunk in self._user_chunks(user_idx)])
        out = torch.empty(user_idx.numel())
        step = max(1, BLOCK_CELLS // (4 * self.nbr_idx_.shape[1]))
        for start in range(0, user_idx.numel(), step):
            u, i = user_idx[start : start + step], item_idx[start : start + step]
            nbrs = self.nbr_idx_[i]  # (B, M)
            e, rated = self._residuals(u[:, None].expand_as(nbrs), nbrs)
            out[start : start + step] = self._baseline(u, i) + self._weighted(self.nbr_sim_[i], e, rated)
        return out.clamp(*self.range_)

    def _user_chunks(self, user_idx: torch.Tensor) -> Iterator[torch.Tensor]:
        step = max(1, BLOCK_CELLS // (4 * self.n_items * self.nbr_idx_.shape[1]))
        return iter(user_idx.split(step))

    def _score_all(self, users: torch.Tensor) -> torch.Tensor:
        """(B, n_items): every item of a few users, from their dense residual rows."""
        b = users.numel()
        dense = torch.zeros(b, self.n_items + 1)
        rated = torch.zeros(b, self.n_items + 1, dtype=torch.bool)
        which, pos = self.seen_.entries(users)
        items = self.seen_.indices[pos]
        e, _ = self._residuals(users[which], items)
        dense[which, items], rated[which, items] = e, True
        nbrs = self.nbr_idx_.where(self.nbr_idx_ >= 0, self.n_items)  # padding -> the empty last column
        e_all, r_all = dense[:, nbrs], rated[:, nbrs]  # (B, n_items, M)
        sims = self.nbr_sim_.expand(b, -1, -1)
        base = self.mean_ + self.user_bias_[users, None] + self.item_bias_[None, :]
        return (base + self._weighted(sims, e_all, r_all)).clamp(*self.range_)

    def _weighted(self, sims: torch.Tensor, e: torch.Tensor, rated: torch.Tensor) -> torch.Tensor:
        """The similarity-weighted mean residual of the k nearest rated neighbours (last dim), 0 if < min_k."""
        s = torch.where(rated & (sims > 0), sims, torch.zeros(()))
        k = min(self.k, s.shape[-1])
        top, pos = largest(s, k)  # ties among equal similarities do not change the weighted mean
        weight = top.sum(-1)
        used = (top > 0).sum(-1)
        mean = (top * e.gather(-1, pos)).sum(-1) / weight.clamp(min=1e-12)
        return torch.where(used >= self.min_k, mean, torch.zeros(()))

    def _residuals(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training residual of each (user, item) pair (any shape) and whether the pair was rated."""
        keys = users * self.n_items + items.clamp(min=0)
        pos = torch.searchsorted(self.keys_, keys).clamp(max=self.keys_.numel() - 1)
        found = (self.keys_[pos] == keys) & (items >= 0)
        return torch.where(found, self.resid_[pos], torch.zeros(())), found

    def _baseline(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return self.mean_ + self.user_bias_[u] + self.item_bias_[i]

    def _fallback(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        return partial_bias(self.mean_, self.user_bias_, self.item_bias_, user_idx, item_idx).clamp(*self.range_)

    # ---- capabilities -------------------------------------------------------------------------
    def similar_indices(self, item_idx: torch.Tensor, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        """The items with the highest shrunk residual correlation (from the kept neighbours)."""
        sims = torch.full((item_idx.numel(), self.n_items + 1), -torch.inf)
        nbrs = self.nbr_idx_[item_idx]
        sims.scatter_(1, nbrs.where(nbrs >= 0, self.n_items), self.nbr_sim_[item_idx])
        sims = sims[:, : self.n_items]
        sims[torch.arange(item_idx.numel()), item_idx] = -torch.inf
        return top_k(sims, max(1, min(k, self.n_items - 1)))

    def cold_scores(self) -> torch.Tensor:
        """mean + b_i, clamped to the training ratings' range."""
        return (self.mean_ + self.item_bias_).clamp(*self.range_)

    def item_biases(self) -> torch.Tensor:
        return self.item_bias_

    def user_biases(self) -> torch.Tensor:
        return self.user_bias_

    def rating_scale(self) -> tuple[float, float] | None:
        return self.range_

    def output_range(self) -> tuple[float, float] | None:
        return self.range_

    # ---- files ----------------------------------------------------------------------------------
    def _fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return ({"user_bias": self.user_bias_, "item_bias": self.item_bias_, "keys": self.keys_,
                 "resid": self.resid_, "nbr_idx": self.nbr_idx_, "nbr_sim": self.nbr_sim_},
                {"mean": self.mean_, "range": list(self.range_)})

    def _restore(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        self.user_bias_, self.item_bias_ = tensors["user_bias"], tensors["item_bias"]
        self.keys_, self.resid_ = tensors["keys"], tensors["resid"]
        self.nbr_idx_, self.nbr_sim_ = tensors["nbr_idx"], tensors["nbr_sim"]
        self.mean_, self.range_ = extra["mean"], tuple(extra["range"])


def _neighbours(users: torch.Tensor, items: torch.Tensor, resid: torch.Tensor, n_users: int, n_items: int,
                shrinkage: float, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each item's `width` most similar items (indices (n_items, width), -1 padded) and their similarities."""
    def sparse(values: torch.Tensor) -> torch.Tensor:  # (n_items, n_users)
        return coo(torch.stack([items, users]), values, (n_items, n_users)).coalesce()

    ones = torch.ones_like(resid)
    e_t, b_t, e2_t = sparse(resid), sparse(ones), sparse(resid * resid)
    idx = torch.full((n_items, width), -1, dtype=torch.int64)
    sim = torch.zeros(n_items, width)
    step = max(1, BLOCK_CELLS // max(n_users, n_items, 1) // 4)
    for start in range(0, n_items, step):
        end = min(n_items, start + step)
        in_block = (items >= start) & (items < end)
        rows, cols = users[in_block], items[in_block] - start
        e_b = torch.zeros(n_users, end - start)
        e_b[rows, cols] = resid[in_block]
        b_b = torch.zeros(n_users, end - start)
        b_b[rows, cols] = 1.0
        prods = torch.sparse.mm(e_t, e_b)  # (n_items, c): sum_u e_uj e_ui
        common, sq_i = torch.sparse.mm(b_t, torch.cat([b_b, e_b * e_b], 1)).split(end - start, 1)
        sq_j = torch.sparse.mm(e2_t, b_b)  # sum over common users of e_uj^2
        rho = prods / (sq_i * sq_j).sqrt().clamp(min=1e-12)
        shrunk = ((common - 1).clamp(min=0) / ((common - 1).clamp(min=0) + shrinkage).clamp(min=1e-12)) * rho
        shrunk = shrunk.T.contiguous()  # (c, n_items): row = target item
        shrunk[torch.arange(end - start), torch.arange(start, end)] = -torch.inf
        best, where = largest(shrunk, width)
        keep = torch.isfinite(best) & (best > 0)
        idx[start:end] = torch.where(keep, where, torch.full_like(where, -1))
        sim[start:end] = torch.where(keep, best, torch.zeros(()))
    return idx, sim
