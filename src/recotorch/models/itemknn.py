"""Item-item models: a user's score for item j sums the links from the items they interacted with.

`ItemItemModel` is the shared part (scores `x_u @ W` for the user's training row `x_u`,
pair scores, `similar_items` from the rows of `W`, optional recency weights in `x_u`);
`ItemKNN` keeps each item's top neighbours by cosine or BM25-weighted co-occurrence. EASE
(`recotorch.models.ease`) builds on the same base with a dense `W`, RP3beta
(`recotorch.models.rp3beta`) with a random-walk `W`.

Interaction strength: X's entries are the implicit confidences of `recotorch.data.implicit`
(`confidence`: the weights of `to_implicit`, e.g. repeat-purchase counts, divided by their
mean; all 1 for binary data), both when W is learnt and in the scored rows x_u.

Links from 0/1 (`links_from="binary"`, EASE's and item-kNN's default): W is learnt from which
items each user has, and only x_u carries the confidences. On a repeat-purchase log a Gram
matrix of counts is dominated by the few heavily re-bought (user, item) pairs: EASE's NDCG@10
on new items fell to 0.23x of binary with W from counts, while 0/1 links with a weighted x_u
kept 1.00x (`benchmarks/results/weights.md`). `links_from="weights"` learns W from them too.

Repeats (`own_weight` a, EASE and item-kNN; 0 for RP3beta): a seen item's score is (1 - a) x (x_u W)_j + a x x_uj, the
model's reconstruction mixed with the user's own confidence for it, so when seen items may be
recommended (`recommend --include-seen`, next purchases of a shop) the items a user buys most
come first. It changes no ranking when seen items are excluded (the default everywhere): the
other items' scores are all scaled by 1 - a. A new user's folded-in row (`fold_in`) is scored without
it: the row carries the popularity prior, whose mixing in would lift every popular item (on the
web page's 0/1 test, liking three dairy items then brought fewer dairy items).

Recency (`half_life`): with `half_life` set, each training item of the user also counts
0.5 ** (s / h), s = how many of the user's training rows came after it (0 for the latest, by
timestamp, ties by row order) and h = half_life x the user's number of rows
(`half_life_unit="fraction"`) or h = half_life (`"steps"`). Only x_u changes: W is learnt
without recency. Items a user gains after fitting (e.g. through `recotorch.online.update`)
count 1, as the most recent ones.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import polars as pl
import torch

from recotorch.core.device import tensor_device
from recotorch.core.topk import largest, top_k
from recotorch.data.implicit import DEFAULT_WEIGHTS as LOG1P_DEFAULT
from recotorch.data.implicit import confidence
from recotorch.data.interactions import CSR, Interactions, build_csr
from recotorch.models.base import Estimator, NewRows, register
from recotorch.train.config import Params, Tune, int_range, log_uniform, param

# Cells of the dense blocks built while fitting (a block of item rows x users or x items).
BLOCK_CELLS = 2**24
DEFAULT_ITEM_PRIOR = 1.0  # fold-in: weight of the average training user's row added to a new user's row
HalfLifeUnit = Literal["fraction", "steps"]
LinksFrom = Literal["binary", "weights"]
LINKS_HELP = "learn W from 0/1 pairs (binary) or from the confidences (weights); x_u always has the confidences"
OWN_HELP = ("share of a seen item's score that is the user's own confidence for it (ranks repeats; no effect "
            "when seen items are excluded)")


@dataclass
class RecencyConfig(Params):
    """The fields every item-item model takes: device and the recency weights of x_u."""

    device: str = param("cpu", help="cpu, cuda, cuda:1, or auto")
    half_life: float | None = param(None, gt=0, help="recency half-life of a user's items (None: no recency)",
                                    tune=log_uniform(0.05, 5.0))
    half_life_unit: HalfLifeUnit = param(  # noqa: RUF009 (a type alias)
        "fraction", help="half_life as a fraction of the user's rows, or in steps")


def coo(coords: torch.Tensor, values: torch.Tensor, shape: tuple[int, int], coalesced: bool = False) -> torch.Tensor:
    """A sparse COO matrix; `coalesced=True` promises sorted, distinct coordinates."""
    return torch.sparse_coo_tensor(coords, values, shape, is_coalesced=coalesced, check_invariants=False)


def weighted_pairs(train: Interactions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(user_idx, item_idx, confidence) of the distinct pairs, sorted by user then item (mean confidence 1)."""
    return confidence(train)


def distinct_pairs(train: Interactions) -> tuple[torch.Tensor, torch.Tensor]:
    """(user_idx, item_idx) of the distinct pairs in `train`, sorted by user then item."""
    keys = torch.unique(train.user_idx * train.n_items + train.item_idx)
    return keys // train.n_items, keys % train.n_items


def gram_blocks(users: torch.Tensor, items: torch.Tensor, values: torch.Tensor, n_users: int, n_items: int,
                device: torch.device, block_cells: int = BLOCK_CELLS) -> Iterator[tuple[int, torch.Tensor]]:
    """Rows of the item-item Gram matrix X^T X of the sparse (n_users, n_items) matrix X, in blocks.

    Yields (first item, block (c, n_items) dense on `device`); peak memory is about
    c * (n_users + n_items) floats with c = block_cells // max(n_users, n_items).
    """
    by_item = build_csr(items, users, n_items, values)
    rows = torch.repeat_interleave(torch.arange(n_items), by_item.row_lengths()).to(device)
    cols, vals = by_item.indices.to(device), by_item.values.to(device)  # type: ignore[union-attr]
    xt = coo(torch.stack([rows, cols]), vals, (n_items, n_users)).coalesce()
    step = max(1, block_cells // max(n_users, n_items, 1))
    for start in range(0, n_items, step):
        end = min(n_items, start + step)
        lo, hi = int(by_item.indptr[start]), int(by_item.indptr[end])
        block = torch.zeros(end - start, n_users, device=device)
        block[rows[lo:hi] - start, cols[lo:hi]] = vals[lo:hi]
        yield start, torch.sparse.mm(xt, block.T).T  # (c, n_items)


def recency_weights(user_idx: torch.Tensor, order: torch.Tensor, half_life: float,
                    unit: HalfLifeUnit = "fraction") -> torch.Tensor:
    """Weight (n,) of each row: 0.5 ** (rows of the same user after it / h), 1 for each user's latest.

    `order` (n,) sorts a user's rows in time (timestamps; ties keep row order). h is `half_life`
    times the user's row count (unit "fraction") or `half_life` itself (unit "steps").
    """
    if unit not in ("fraction", "steps"):
        raise ValueError(f"half_life_unit must be 'fraction' or 'steps', got {unit!r}")
    if half_life <= 0:
        raise ValueError(f"half_life must be > 0, got {half_life}")
    n = user_idx.numel()
    by_time = torch.argsort(order, stable=True)
    ordered = by_time[torch.argsort(user_idx[by_time], stable=True)]  # rows sorted by (user, time, row)
    counts = torch.bincount(user_idx)
    last = torch.cumsum(counts, 0) - 1  # sorted position of each user's latest row
    after = torch.empty(n)
    after[ordered] = (last[user_idx[ordered]] - torch.arange(n)).float()
    scale = half_life * counts[user_idx].float() if unit == "fraction" else torch.full((n,), float(half_life))
    return torch.pow(0.5, after / scale)


class ItemItemModel(Estimator):
    """Base of item-item models: score(u) = x_u @ W, x_u the user's row of training items.

    x_u holds the confidences of the user's items (1 for binary data), times recency weights
    when `half_life` is set (see the module docstring).
    Subclasses implement `_fit_links` (learn W), `_propagate`, `_links` and `_state`/`_restore`
    (adding `_profile_state()` and calling `_restore_profile`).
    """

    task = "ranking"
    CAPABILITIES = frozenset({"fold_in", "update", "similar_items"})
    device: str
    half_life: float | None = None
    half_life_unit: HalfLifeUnit = "fraction"
    DEFAULT_WEIGHTS: ClassVar[str | None] = LOG1P_DEFAULT  # benchmarks/results/weights.md
    links_from: LinksFrom = "weights"  # subclasses with the option declare it in their Config
    own_weight: float = 0.0  # share of a seen item's score that is the user's own x_uj (module docstring)
    profile_: CSR | None = None  # weight (confidence x recency) of each user's training items (None: all 1)

    @property
    def torch_device(self) -> torch.device:
        return tensor_device(self.device)

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        users, items, conf = weighted_pairs(train)
        if self.half_life is not None:
            recency = self._recency_profile(train)  # same (user, item) order as the pairs
            self.profile_ = CSR(recency.indptr, recency.indices, recency.values * conf)  # type: ignore[operator]
        elif bool((conf != 1.0).any()):
            self.profile_ = build_csr(users, items, train.n_users, conf)
        else:
            self.profile_ = None  # binary data: every seen item counts 1
        self._fit_links(train, valid)

    def _weighted_pairs(self, train: Interactions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What `_fit_links` learns W from: the distinct pairs and their confidences (1 with links_from="binary")."""
        users, items, conf = weighted_pairs(train)
        if self.links_from == "binary":
            conf = torch.ones_like(conf)
        elif self.links_from != "weights":
            raise ValueError(f"links_from must be 'binary' or 'weights', got {self.links_from!r}")
        return users, items, conf

    @abstractmethod
    def _fit_links(self, train: Interactions, valid: Interactions | None) -> None:
        """Learn W from compacted training data."""

    def _recency_profile(self, train: Interactions) -> CSR:
        """Per user, each distinct training item with its recency weight (a pair's latest row counts)."""
        if train.timestamp is None:
            raise ValueError("half_life needs timestamps in the training data (none were given)")
        weight = recency_weights(train.user_idx, train.timestamp, float(self.half_life),  # type: ignore[arg-type]
                                 self.half_life_unit)
        keys, inverse = torch.unique(train.user_idx * train.n_items + train.item_idx, return_inverse=True)
        weight = torch.zeros(keys.numel()).scatter_reduce_(0, inverse, weight, reduce="amax")
        return build_csr(keys // train.n_items, keys % train.n_items, train.n_users, weight)

    def history_rows(self, item_idx: torch.Tensor, order: torch.Tensor | None = None) -> torch.Tensor:
        """Rows x (B, n_items) for histories that are not training users (e.g. new users to fold in).

        item_idx (B, L): model item indices, -1 = padding. With `order` (B, L) (timestamps, or any
        key that sorts each history in time) and `half_life` set, items get recency weights as in
        fitting; otherwise every item counts 1 (the 0/1 row).
        """
        mask = item_idx >= 0
        weight = mask.float()
        if order is not None and self.half_life is not None:
            which = torch.arange(item_idx.shape[0])[:, None].expand_as(item_idx)[mask]
            weight[mask] = recency_weights(which, order[mask], float(self.half_life), self.half_life_unit)
        rows = torch.zeros(item_idx.shape[0], self.n_items)
        return rows.scatter_reduce_(1, item_idx.clamp(min=0), weight, reduce="amax")

    def _profile_state(self) -> dict[str, torch.Tensor]:
        """Tensors of the recency profile for `_state` (empty without one)."""
        if self.profile_ is None:
            return {}
        return {"profile.indptr": self.profile_.indptr, "profile.indices": self.profile_.indices,
                "profile.values": self.profile_.values}  # type: ignore[dict-item]

    def _restore_profile(self, tensors: dict[str, torch.Tensor]) -> None:
        self.profile_ = None
        if "profile.indptr" in tensors:
            self.profile_ = CSR(tensors["profile.indptr"], tensors["profile.indices"], tensors["profile.values"])

    # ---- new users and updates ----------------------------------------------------------
    def fold_in(self, item_idx: torch.Tensor, values: torch.Tensor | None = None, *, reg: float | None = None,
                reg_bias: float | None = None, user_features: pl.DataFrame | None = None) -> torch.Tensor:
        """The 0/1 row (B, n_items) plus `reg` (default `DEFAULT_ITEM_PRIOR`) times the average training
        user's row: one average user's worth of prior, which is popularity through W. Values are ignored.

        Without the prior a user with five items gets only those items' neighbours; with it, EASE beat
        most-popular on ml-100k user-cold NDCG@10 at every k (without it, it lost at every k).
        """
        item_idx = item_idx.long()
        mask = item_idx >= 0
        rows = torch.zeros(item_idx.shape[0], self.n_items).scatter_reduce_(1, item_idx.clamp(min=0), mask.float(),
                                                                            reduce="amax")
        mean_row = torch.bincount(self.seen_.indices, minlength=self.n_items).float() / max(self.n_users, 1)
        return rows + (DEFAULT_ITEM_PRIOR if reg is None else reg) * mean_row

    def score_new_users(self, vectors: torch.Tensor) -> torch.Tensor:
        """x @ W for dense rows x (B, n_items) (rows with the prior are dense); no `own_weight` (module docstring)."""
        with torch.no_grad():
            return self._propagate(vectors.to_sparse().to(self.torch_device)).cpu()

    def _mix_own(self, scores: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """(1 - own_weight) x scores + own_weight x rows (the users' own x_u, dense or sparse), in place."""
        if not self.own_weight:
            return scores
        scores.mul_(1.0 - self.own_weight)
        if rows.is_sparse:
            rows = rows.cpu().coalesce()
            return scores.index_put_(tuple(rows.indices()), self.own_weight * rows.values(), accumulate=True)
        return scores.add_(rows.to(scores.device), alpha=self.own_weight)

    def update(self, rows: NewRows, *, reg: float | None = None, epochs: int = 0, lr: float | None = None) -> None:
        """Scores use the merged seen sets (new rows count 1); new items get no links until a refit."""
        if self.n_items > rows.old_items:
            self._grow_items(rows.old_items)
        if self.profile_ is not None and self.profile_.n_rows < self.n_users:  # new users: empty profile rows
            p = self.profile_
            pad = p.indptr[-1:].expand(self.n_users - p.n_rows)
            self.profile_ = CSR(torch.cat([p.indptr, pad]), p.indices, p.values)

    @abstractmethod
    def _grow_items(self, old_items: int) -> None:
        """Give the items from `old_items` on empty rows and columns of W."""

    @abstractmethod
    def _propagate(self, rows: torch.Tensor) -> torch.Tensor:
        """x @ W for a sparse COO batch of user rows (B, n_items) on the device: dense (B, n_items)."""

    @abstractmethod
    def _links(self, item_idx: torch.Tensor) -> torch.Tensor:
        """Rows of W for these items (k, n_items) on CPU, -inf where there is no link."""

    def user_rows(self, user_idx: torch.Tensor) -> torch.Tensor:
        """The users' training rows x_u as a sparse COO tensor (B, n_items) on the model's device.

        Entries are the weights of `profile_` (confidence x recency), 1 without one; seen items the
        profile lacks (added after fitting) count 1.
        """
        user_idx = user_idx.cpu()
        which, pos = self.seen_.entries(user_idx)
        keys, values = which * self.n_items + self.seen_.indices[pos], torch.ones(which.numel())
        if self.profile_ is not None:
            in_profile = (user_idx < self.profile_.n_rows).nonzero().flatten()  # users added later have none
            at, pos = self.profile_.entries(user_idx[in_profile])
            keys = torch.cat([keys, in_profile[at] * self.n_items + self.profile_.indices[pos]])
            values = torch.cat([values, self.profile_.values[pos]])  # type: ignore[index]
        idx, inverse = torch.unique(keys, return_inverse=True)  # distinct (row, item), duplicates merged
        n_seen = which.numel()
        merged = torch.ones(idx.numel())
        merged[inverse[n_seen:]] = values[n_seen:]  # the profile's weight where it has one
        values = merged
        coords = torch.stack([idx // self.n_items, idx % self.n_items])
        return coo(coords, values, (user_idx.numel(), self.n_items), True).to(self.torch_device)

    def score(self, user_idx: torch.Tensor, item_idx: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            if item_idx is None:
                rows = self.user_rows(user_idx)
                return self._mix_own(self._propagate(rows).cpu(), rows)  # seen items: the user's own confidence
            return self._pair_scores(user_idx, item_idx)

    def _pair_scores(self, user_idx: torch.Tensor, item_idx: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """Pairs read off the full-catalogue scores of their distinct users, `chunk` users at a time."""
        uniq, inverse = torch.unique(user_idx, return_inverse=True)
        out = torch.empty(user_idx.numel())
        for start in range(0, uniq.numel(), chunk):
            full = self.score(uniq[start : start + chunk])
            sel = (inverse >= start) & (inverse < start + chunk)
            out[sel] = full[inverse[sel] - start, item_idx[sel]]
        return out

    def similar_indices(self, item_idx: torch.Tensor, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        """Items with the strongest links from each given item (its row of W), itself left out."""
        i = item_idx
        links = self._links(i)
        links[torch.arange(i.numel()), i] = -torch.inf
        return top_k(links, max(1, min(k, self.n_items - 1)))


@register
class ItemKNN(ItemItemModel):
    """Item-item nearest neighbours: score(u, j) = sum over the user's items i of sim(i, j).

    weighting="cosine": sim(i, j) = c_ij / (sqrt(n_i n_j) + shrink), c_ij users shared by i and j.
    weighting="bm25": the item-user matrix is BM25-weighted (users as terms: idf per user,
    item rows length-normalised by popularity with `k1`, `b`), sim = dot products of item rows.
    Each item keeps its `neighbours` strongest positive links (itself excluded). `half_life`
    (with `half_life_unit`) weights the user's items by recency when scoring (module docstring).

    Memory: the model holds n_items x neighbours links (12 bytes each); fitting builds dense
    blocks of about 2**24 cells (64 MB), never the whole item-item matrix. Scoring uses W dense
    when n_items^2 <= 2**24 (up to 4,096 items, 64 MB), else sparse (batch x n_items dense).

    >>> ItemKNN(neighbours=100).fit(positives).similar_items([50], k=5)
    """

    name = "itemknn"
    TEST_PARAMS: ClassVar[dict[str, Any]] = {"neighbours": 10}

    @dataclass
    class Config(RecencyConfig):
        neighbours: int = param(100, ge=1, help="links kept per item", tune=int_range(10, 1000, log=True))
        weighting: Literal["cosine", "bm25"] = param("cosine", help="cosine or bm25-weighted co-occurrence")
        shrink: float = param(0.0, ge=0, help="added to the cosine's denominator", tune=Tune(0.0, 100.0))
        k1: float = param(1.2, ge=0, help="BM25 saturation")
        b: float = param(0.75, ge=0, le=1, help="BM25 length normalisation")
        links_from: LinksFrom = param("binary", help=LINKS_HELP)  # noqa: RUF009 (a type alias)
        # no tune hint: the tuner ranks with seen items excluded, where own_weight changes no ranking
        own_weight: float = param(0.5, ge=0, le=1, help=OWN_HELP)

    def _fit_links(self, train: Interactions, valid: Interactions | None) -> None:
        n_users, n_items, dev = train.n_users, train.n_items, self.torch_device
        users, items, conf = self._weighted_pairs(train)
        item_count = torch.bincount(items, minlength=n_items).float()
        if self.weighting == "bm25":
            idf = torch.log(n_items / (1.0 + torch.bincount(users, minlength=n_users).float())).clamp(min=0.0)
            norm = (1.0 - self.b) + self.b * item_count / item_count.mean()
            values = (self.k1 + 1.0) / (self.k1 * norm[items] + 1.0) * idf[users] * conf
        else:
            values = conf
        # cosine over the weighted columns: ||x_i|| (sqrt of the user count for binary data)
        norms = torch.zeros(n_items).index_add_(0, items, values * values).sqrt().to(dev)
        k = min(self.neighbours, max(n_items - 1, 1))
        nbr_parts, sim_parts = [], []
        for start, block in gram_blocks(users, items, values, n_users, n_items, dev):
            rows = torch.arange(block.shape[0], device=dev)
            if self.weighting == "cosine":
                block = block / (norms[start : start + block.shape[0], None] * norms[None, :] + self.shrink + 1e-12)
            block[rows, rows + start] = -torch.inf  # no self links
            sim, nbr = largest(block, k, dim=1)
            nbr_parts.append(nbr)
            sim_parts.append(sim.clamp(min=0.0))  # a link of 0 contributes nothing
        self._set_links(torch.cat(nbr_parts).cpu(), torch.cat(sim_parts).cpu())

    def _set_links(self, neighbours: torch.Tensor, similarity: torch.Tensor) -> None:
        """Keep (n_items, k) neighbour lists and their link weights, and build the scoring operator."""
        self.neighbours_, self.similarity_ = neighbours, similarity
        self._build_operator()

    def _build_operator(self) -> None:
        """W for scoring: dense when n_items^2 fits in BLOCK_CELLS (faster), else sparse W^T."""
        n, k = self.neighbours_.shape
        src = torch.arange(n).repeat_interleave(k)
        keep = self.similarity_.flatten() > 0
        coords = torch.stack([self.neighbours_.flatten()[keep], src[keep]])  # W^T: (neighbour, item)
        wt = coo(coords, self.similarity_.flatten()[keep], (n, n)).coalesce()
        self._w = wt.to_dense().T.contiguous() if n * n <= BLOCK_CELLS else None
        self._wt = None if self._w is not None else wt.to(self.torch_device)
        if self._w is not None:
            self._w = self._w.to(self.torch_device)

    def _propagate(self, rows: torch.Tensor) -> torch.Tensor:
        if self._w is not None:
            return torch.sparse.mm(rows, self._w)
        return torch.sparse.mm(self._wt, rows.to_dense().T).T  # (W^T x^T)^T = x W

    def _grow_items(self, old_items: int) -> None:
        """A new item's neighbour list points at itself with similarity 0 (no links)."""
        k = self.neighbours_.shape[1]
        itself = torch.arange(old_items, self.n_items)[:, None].expand(-1, k)
        self.neighbours_ = torch.cat([self.neighbours_, itself])
        self.similarity_ = torch.cat([self.similarity_, torch.zeros(self.n_items - old_items, k)])
        self._build_operator()

    def _links(self, item_idx: torch.Tensor) -> torch.Tensor:
        out = torch.full((item_idx.numel(), self.n_items), -torch.inf)
        sim, nbr = self.similarity_[item_idx], self.neighbours_[item_idx]
        out.scatter_(1, nbr, torch.where(sim > 0, sim, -torch.inf))
        return out

    def _fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {"neighbours": self.neighbours_, "similarity": self.similarity_, **self._profile_state()}, {}

    def _restore(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        self.neighbours_, self.similarity_ = tensors["neighbours"], tensors["similarity"]
        self._restore_profile(tensors)
        self._build_operator()

