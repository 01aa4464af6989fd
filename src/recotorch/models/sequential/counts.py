"""Fast next-item baselines from counts: last-item transitions and item-kNN over the last few items."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from recotorch.core.topk import largest
from recotorch.data.interactions import CSR, Interactions, build_csr
from recotorch.models.base import register
from recotorch.models.sequential.base import SequenceModel
from recotorch.train.config import Params, int_range, param


class _CountModel(SequenceModel):
    """Scores are sums of rows of a sparse item-item table (`links_`) over the last `n_last` items,
    plus a popularity tie-break; the representation of a history is its score row."""

    links_: CSR
    popularity_: torch.Tensor
    n_last: int = 1
    # popularity scaled to (0, tie_break] breaks ties between equally linked items; large enough to
    # survive float32 rounding of the link sums, small enough not to reorder distinct ones
    tie_break: ClassVar[float] = 1e-3

    @property
    def context_length(self) -> int:
        return self.n_last

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        if self.n_last < 1:
            raise ValueError(f"n_last must be >= 1, got {self.n_last}")
        self._store_sequences(train)
        pop = torch.bincount(train.item_idx, minlength=train.n_items).float()
        self.popularity_ = pop / pop.max().clamp(min=1.0)
        self.links_ = self._build_links(train)

    def _build_links(self, train: Interactions) -> CSR:
        raise NotImplementedError

    def _represent(self, history: torch.Tensor) -> torch.Tensor:
        last = history[:, -self.n_last:]
        rows = last.flatten()
        owner = torch.arange(last.shape[0]).repeat_interleave(last.shape[1])
        owner, rows = owner[rows >= 0], rows[rows >= 0]
        which, pos = self.links_.entries(rows)
        scores = self.tie_break * self.popularity_.repeat(last.shape[0], 1)
        scores.index_put_((owner[which], self.links_.indices[pos]), self.links_.values[pos], accumulate=True)
        return scores

    def _score_represented(self, rep: torch.Tensor) -> torch.Tensor:
        return rep.clone()

    def _fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {**self._sequence_state(), "links.indptr": self.links_.indptr, "links.indices": self.links_.indices,
                "links.values": self.links_.values, "popularity": self.popularity_}, {"n_items": self.n_items}

    def _restore(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        self._restore_sequences(tensors, extra["n_items"])
        self.links_ = CSR(tensors["links.indptr"], tensors["links.indices"], tensors["links.values"])
        self.popularity_ = tensors["popularity"]


@register
class Transitions(_CountModel):
    """"Bought X, then Y": how often item j directly followed item i in a training sequence, read off
    the user's last item (ties broken by popularity).

    >>> Transitions().fit(train).recommend_history([50, 172], k=10)
    """

    name = "transitions"
    TEST_PARAMS: ClassVar[dict[str, Any]] = {}

    @dataclass
    class Config(Params):
        """No hyper-parameters."""

    def _build_links(self, train: Interactions) -> CSR:
        seqs = self.sequences_
        follows = torch.ones(seqs.items.numel(), dtype=torch.bool)
        follows[seqs.indptr[1:][seqs.lengths() > 0] - 1] = False  # a row's last item has no successor
        src, dst = seqs.items[:-1][follows[:-1]], seqs.items[1:][follows[:-1]]
        key, counts = torch.unique(src * train.n_items + dst, return_counts=True)
        return build_csr(key // train.n_items, key % train.n_items, train.n_items, counts.float())


@register
class KNNLast(_CountModel):
    """Item-kNN over the last few items: the cosine similarity of items (over users' 0/1 histories),
    summed over the user's `n_last` latest items, keeping each item's `neighbours` most similar.

    >>> KNNLast(n_last=3).fit(train).recommend([196], k=10)
    """

    name = "knn_last"
    tie_break = 1e-4
    TEST_PARAMS: ClassVar[dict[str, Any]] = {"n_last": 2, "neighbours": 5}

    @dataclass
    class Config(Params):
        n_last: int = param(3, ge=1, help="latest items of the user's history that vote", tune=int_range(1, 20))
        neighbours: int = param(200, ge=1, help="most similar items kept per item", tune=int_range(10, 1000, log=True))
        block: int = param(1024, ge=1, help="items per block when building the similarities (memory)")

    def _build_links(self, train: Interactions) -> CSR:
        if self.neighbours < 1:
            raise ValueError(f"neighbours must be >= 1, got {self.neighbours}")
        n = train.n_items
        key = torch.unique(train.user_idx * n + train.item_idx)  # distinct (user, item) pairs
        users, items = key // n, key % n
        by_item = build_csr(items, users, n)  # (items, users) 0/1 rows
        norms = torch.bincount(items, minlength=n).float().sqrt().clamp(min=1e-9)
        keep = min(self.neighbours, max(n - 1, 1))
        small = n * train.n_users <= 1 << 26
        xt = _dense_rows(by_item, 0, n, train.n_users).T if small else torch.sparse_coo_tensor(
            torch.stack([users, items]), torch.ones(key.numel()), (train.n_users, n), check_invariants=True)
        rows, cols, vals = [], [], []
        for start in range(0, n, self.block):
            stop = min(start + self.block, n)
            block = _dense_rows(by_item, start, stop, train.n_users)  # (b, users)
            co = block @ xt if small else torch.sparse.mm(xt.T, block.T).T  # (b, items) co-counts
            sims = co / norms[start:stop, None] / norms[None, :]
            sims[torch.arange(stop - start), torch.arange(start, stop)] = 0.0
            val, idx = largest(sims, keep, dim=1)
            nz = val > 0
            rows.append(torch.arange(start, stop)[:, None].expand_as(idx)[nz])
            cols.append(idx[nz])
            vals.append(val[nz])
        return build_csr(torch.cat(rows), torch.cat(cols), n, torch.cat(vals))


def _dense_rows(csr: CSR, start: int, stop: int, n_cols: int) -> torch.Tensor:
    """Rows start:stop of a 0/1 CSR as a dense (stop - start, n_cols) tensor."""
    lo, hi = int(csr.indptr[start]), int(csr.indptr[stop])
    out = torch.zeros(stop - start, n_cols)
    row = torch.repeat_interleave(torch.arange(stop - start), csr.indptr[start + 1: stop + 1] - csr.indptr[start:stop])
    out[row, csr.indices[lo:hi]] = 1.0
    return out
