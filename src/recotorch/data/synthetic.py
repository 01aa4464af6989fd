"""Synthetic interaction logs at scale: power-law popularity, planted low-rank ratings, timestamps.

Rows are made in chunks of users, so memory stays bounded however many rows are asked for,
and every chunk is seeded from (seed, chunk number): the same arguments give the same log.

- user activity and item popularity follow power laws (Zipf exponents `user_alpha`,
  `item_alpha`; ranks are shuffled, so popular ids are spread over the id range);
- each user has at least one row and never rates the same item twice;
- rating = clip(round(mean + b_u + b_i + <p_u, q_i> + noise), 1, 5) from planted factors, so
  a model that recovers the factors beats the bias baseline (see `SyntheticLog.truth`);
- timestamps are integer seconds spread over `days` days from 2020-01-01.

>>> log = generate(n_users=1000, n_items=500, n_interactions=20_000, seed=0)
>>> data = log.interactions()            # in memory
>>> log.write("synthetic.parquet")       # streamed chunk by chunk (CSV too)
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from recotorch.core.topk import largest
from recotorch.data.interactions import Interactions
from recotorch.data.vocab import Vocab

START = 1_577_836_800  # 2020-01-01T00:00:00Z


@dataclass(frozen=True)
class Truth:
    """The planted model: rating ~ mean + user_bias + item_bias + user_factors @ item_factors.T."""

    mean: float
    user_bias: torch.Tensor  # (n_users,)
    item_bias: torch.Tensor  # (n_items,)
    user_factors: torch.Tensor  # (n_users, dim)
    item_factors: torch.Tensor  # (n_items, dim)

    def expected(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Noise-free rating before rounding and clipping."""
        dot = (self.user_factors.index_select(0, user_idx) * self.item_factors.index_select(0, item_idx)).sum(-1)
        return self.mean + self.user_bias.index_select(0, user_idx) + self.item_bias.index_select(0, item_idx) + dot


class SyntheticLog:
    """A reproducible synthetic log; rows are produced lazily, chunk by chunk (see `generate`)."""

    def __init__(self, n_users: int, n_items: int, n_interactions: int, dim: int, seed: int, *,
                 item_alpha: float, user_alpha: float, noise: float, days: int, chunk_rows: int) -> None:
        if min(n_users, n_items, dim, chunk_rows) < 1:
            raise ValueError("n_users, n_items, dim and chunk_rows must be >= 1")
        if n_interactions < n_users:
            raise ValueError(f"every user gets a row: need n_interactions >= n_users ({n_users:,})")
        cap = max(1, n_items // 2)  # a user rates at most half the catalogue, so pairs stay distinct
        if n_interactions > n_users * cap:
            raise ValueError(f"{n_interactions:,} distinct pairs do not fit {n_users:,} users rating "
                             f"at most {cap:,} items each")
        self.n_users, self.n_items, self.n_interactions = n_users, n_items, n_interactions
        self.dim, self.seed, self.noise, self.days, self.chunk_rows = dim, seed, noise, days, chunk_rows
        g = torch.Generator().manual_seed(seed)
        # the planted model: biases and factors scaled so ratings spread like MovieLens stars
        self.truth = Truth(
            mean=3.5,
            user_bias=0.4 * torch.randn(n_users, generator=g),
            item_bias=0.5 * torch.randn(n_items, generator=g),
            user_factors=torch.randn(n_users, dim, generator=g) * (0.9 / dim) ** 0.5,
            item_factors=torch.randn(n_items, dim, generator=g),
        )
        self._item_cdf = _cdf(_zipf(n_items, item_alpha, g))
        self.user_counts = _allocate(n_interactions, _zipf(n_users, user_alpha, g), cap)  # (n_users,)
        self._user_order = torch.randperm(n_users, generator=g)  # chunks are runs of this order

    def __len__(self) -> int:
        return self.n_interactions

    def __repr__(self) -> str:
        return (f"SyntheticLog({self.n_interactions:,} rows, {self.n_users:,} users x {self.n_items:,} items, "
                f"dim={self.dim}, seed={self.seed})")

    # ---- rows -------------------------------------------------------------------------------
    def chunks(self) -> Iterator[pl.DataFrame]:
        """Frames of about `chunk_rows` rows: user, item (int64 ids), rating (float32), timestamp."""
        counts = self.user_counts[self._user_order]
        ends = torch.cumsum(counts, 0)
        targets = torch.arange(1, -(-self.n_interactions // self.chunk_rows)) * self.chunk_rows
        bounds = torch.searchsorted(ends, targets, right=True).tolist()
        edges = [0, *sorted(set(bounds) - {0, self.n_users}), self.n_users]
        for c, (lo, hi) in enumerate(itertools.pairwise(edges)):
            yield self._chunk(c, self._user_order[lo:hi], counts[lo:hi])

    def _chunk(self, c: int, users: torch.Tensor, counts: torch.Tensor) -> pl.DataFrame:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7919 * (c + 1))
        user = torch.repeat_interleave(users, counts)  # (n,)
        item = torch.searchsorted(self._item_cdf, torch.rand(user.numel(), generator=g, dtype=torch.float64))
        item = item.clamp_(max=self.n_items - 1)
        _make_distinct(user, item, self.n_items, self._item_cdf, g)
        shuffle = torch.randperm(user.numel(), generator=g)
        user, item = user[shuffle], item[shuffle]
        raw = self.truth.expected(user, item) + self.noise * torch.randn(user.numel(), generator=g)
        rating = raw.round().clamp_(1, 5)
        seconds = torch.randint(0, self.days * 86_400, (user.numel(),), generator=g)
        return pl.DataFrame({"user": user.numpy(), "item": item.numpy(),
                             "rating": rating.numpy().astype(np.float32), "timestamp": (seconds + START).numpy()})

    def frame(self) -> pl.DataFrame:
        """All rows in one frame (about 24 bytes a row)."""
        return pl.concat(list(self.chunks()), rechunk=True)

    def interactions(self) -> Interactions:
        """All rows as `Interactions`; indices equal the raw ids (0..n-1), so `truth` lines up."""
        frame = self.frame()
        users = Vocab(pl.Series("id", np.arange(self.n_users, dtype=np.int64)))
        items = Vocab(pl.Series("id", np.arange(self.n_items, dtype=np.int64)))
        return Interactions(torch.from_numpy(frame["user"].to_numpy(writable=True)),
                            torch.from_numpy(frame["item"].to_numpy(writable=True)), users, items,
                            rating=torch.from_numpy(frame["rating"].to_numpy(writable=True)),
                            timestamp=torch.from_numpy(frame["timestamp"].to_numpy(writable=True)),
                            source=repr(self))

    # ---- files ------------------------------------------------------------------------------
    def write(self, path: str | Path, *, fmt: str | None = None) -> Path:
        """Stream the log to Parquet (.parquet/.pq) or CSV (anything else), atomically.

        Memory stays at one chunk; a 25M-row CSV is about 0.6 GB, Parquet about 0.2 GB.
        """
        import pyarrow.parquet as pq

        path = Path(path)
        fmt = fmt or ("parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv")
        if fmt not in ("parquet", "csv"):
            raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        try:
            if fmt == "parquet":
                writer = None
                for chunk in self.chunks():
                    table = chunk.to_arrow()
                    writer = writer or pq.ParquetWriter(tmp, table.schema, compression="zstd")
                    writer.write_table(table, row_group_size=1 << 20)
                assert writer is not None
                writer.close()
            else:
                with open(tmp, "wb") as f:
                    for c, chunk in enumerate(self.chunks()):
                        chunk.write_csv(f, include_header=c == 0)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path


def generate(n_users: int, n_items: int, n_interactions: int, dim: int = 16, seed: int = 0, *,
             item_alpha: float = 1.0, user_alpha: float = 0.8, noise: float = 0.5, days: int = 730,
             chunk_rows: int = 2_000_000) -> SyntheticLog:
    """A synthetic rating log (rows made lazily: call `.interactions()`, `.frame()` or `.write()`).

    item_alpha / user_alpha: Zipf exponents of item popularity and user activity (0 = uniform).
    noise: standard deviation of the rating noise before rounding. chunk_rows bounds memory.
    """
    return SyntheticLog(n_users, n_items, n_interactions, dim, seed, item_alpha=item_alpha,
                        user_alpha=user_alpha, noise=noise, days=days, chunk_rows=chunk_rows)


def synth(out: str | Path, n_users: int, n_items: int, n_interactions: int, seed: int = 0,
          dim: int = 16) -> Path:
    """Write a synthetic log to `out` (format from the suffix); the body of `recotorch synth`."""
    return generate(n_users, n_items, n_interactions, dim=dim, seed=seed).write(out)


# ---- helpers -------------------------------------------------------------------------------
def _zipf(n: int, alpha: float, g: torch.Generator) -> torch.Tensor:
    """Weights (n,) proportional to rank^-alpha, ranks shuffled over the ids."""
    weights = torch.arange(1, n + 1, dtype=torch.float64).pow(-alpha)
    return weights[torch.randperm(n, generator=g)]


def _cdf(weights: torch.Tensor) -> torch.Tensor:
    cdf = torch.cumsum(weights, 0)
    return cdf / cdf[-1]


def _allocate(total: int, weights: torch.Tensor, cap: int) -> torch.Tensor:
    """Integer counts (n,) summing to `total`, each in [1, cap], roughly proportional to `weights`."""
    counts = torch.ones(weights.numel(), dtype=torch.int64)
    left = total - weights.numel()
    while left > 0:  # largest remainders; loops again only for what the cap cut off
        room = cap - counts
        w = torch.where(room > 0, weights, torch.zeros_like(weights))
        exact = w / w.sum() * left
        share = exact.floor().long()
        extra = min(left - int(share.sum()), int((room > 0).sum()))
        if extra > 0:
            share[largest(torch.where(room > 0, exact - share, -1.0), extra)[1]] += 1
        share = torch.minimum(share, room)
        counts += share
        left -= int(share.sum())
    return counts


def _make_distinct(user: torch.Tensor, item: torch.Tensor, n_items: int, cdf: torch.Tensor,
                   g: torch.Generator) -> None:
    """Redraw `item` in place where a (user, item) pair repeats, until no pair does.

    Only the rows of users that still have a repeat are sorted again;
    after a few popularity-weighted rounds draws become uniform, so heavy users (up to half
    the catalogue) finish quickly and explore the long tail, as heavy users do.
    """
    rows = torch.arange(user.numel())
    for attempt in range(1000):
        key, order = torch.sort(user[rows] * n_items + item[rows], stable=True)
        repeat = rows[order[1:][key[1:] == key[:-1]]]
        if repeat.numel() == 0:
            return
        if attempt < 4:
            draw = torch.rand(repeat.numel(), generator=g, dtype=torch.float64)
            item[repeat] = torch.searchsorted(cdf, draw).clamp_(max=n_items - 1)
        else:
            item[repeat] = torch.randint(0, n_items, (repeat.numel(),), generator=g)
        dirty = torch.zeros(int(user.max()) + 1, dtype=torch.bool)
        dirty[user[repeat]] = True
        rows = rows[dirty[user[rows]]]
    raise RuntimeError("could not draw distinct items")  # pragma: no cover - the cap prevents it


# ---- implicit logs where how often / how much carries the taste ------------------------------
def _taste_topk(logits: np.ndarray, k: np.ndarray, rng: np.random.Generator,
                exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per row, k[row] distinct columns drawn without replacement with probability ~ exp(logits) (Gumbel top-k).

    Returns (rows, cols) of the draws; `exclude` (bool, logits' shape) marks columns a row may not draw.
    """
    noisy = logits + rng.gumbel(size=logits.shape)
    if exclude is not None:
        noisy[exclude] = -np.inf
    width = int(min(k.max(), logits.shape[1]))
    top = np.argpartition(-noisy, width - 1, axis=1)[:, :width]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(noisy, top, 1), axis=1), 1)
    take = np.arange(width)[None, :] < k[:, None]
    if exclude is not None:
        take &= np.isfinite(np.take_along_axis(noisy, top, 1))
    rows = np.broadcast_to(np.arange(logits.shape[0])[:, None], top.shape)
    return rows[take], top[take]


def _planted(n_users: int, n_items: int, dim: int, item_alpha: float,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(taste affinity (n_users, n_items) with unit variance, log popularity (n_items,) of a shuffled Zipf law)."""
    users = rng.normal(size=(n_users, dim))
    items = rng.normal(size=(n_items, dim))
    affinity = users @ items.T / np.sqrt(dim)
    log_pop = -item_alpha * np.log(rng.permutation(np.arange(1, n_items + 1)))
    return affinity, log_pop - log_pop.mean()


def purchase_log(n_users: int = 3000, n_items: int = 1500, *, dim: int = 8, items_per_user: float = 14.0,
                 discover: float = 1.0, like: float = 1.5, repeats: float = 1.5, item_alpha: float = 0.8,
                 days: int = 365, seed: int = 0) -> pl.DataFrame:
    """A shop's purchase log in which repeat purchases carry the taste signal.

    Columns `customer_id` ("C00042"), `sku` ("SKU-00017"), `qty` (1 + Poisson(0.3)) and `ts`
    (ISO date/time strings), one row per purchase, in time order. Each customer tries about
    `items_per_user` items, drawn from popularity and (by `discover`) their planted taste;
    an item is then bought again 1 + Poisson(`repeats` x exp(`like` x (affinity - 1))) times in
    all: items that match the customer's taste are re-bought, the others tried once. So the
    set of items bought says a little about taste and how often each was bought says more;
    binary data keeps only the first. Each item's first purchase falls at a uniform time in
    `days` and its repeats after it, so a customer's later purchases include items new to them.
    """
    rng = np.random.default_rng(seed)
    affinity, log_pop = _planted(n_users, n_items, dim, item_alpha, rng)
    n_try = np.minimum(1 + rng.poisson(max(items_per_user - 1.0, 0.0), n_users), n_items // 4)
    users, items = _taste_topk(discover * affinity + log_pop, n_try, rng)
    rate = repeats * np.exp(np.minimum(like * (affinity[users, items] - 1.0), 5.0))
    buys = 1 + rng.poisson(rate)
    first = rng.uniform(0, days * 86_400, users.size)
    row_u, row_i = np.repeat(users, buys), np.repeat(items, buys)
    start = np.repeat(first, buys)
    later = np.arange(row_u.size) - np.repeat(np.cumsum(buys) - buys, buys) > 0  # every purchase after the first
    when = start + later * rng.uniform(0, 1, row_u.size) * (days * 86_400 - start)
    order = np.argsort(when, kind="stable")
    seconds = (START + when[order]).astype(np.int64)
    return pl.DataFrame({
        "customer_id": [f"C{u:05d}" for u in row_u[order]],
        "sku": [f"SKU-{i:05d}" for i in row_i[order]],
        "qty": 1 + rng.poisson(0.3, row_u.size),
        "ts": pl.Series(seconds * 1_000_000).cast(pl.Datetime("us")).dt.strftime("%Y-%m-%dT%H:%M:%S"),
    })


def play_log(n_users: int = 2000, n_items: int = 2000, *, dim: int = 8, artists: float = 30.0,
             taste: float = 2.0, spread: float = 1.6, item_alpha: float = 1.0, days: int = 730,
             seed: int = 0) -> pl.DataFrame:
    """A music service's play counts: one row per (user, item) with a heavy-tailed `plays` count.

    Columns `user`, `item` (int ids), `plays` and `timestamp` (first play, epoch seconds). Each
    user has about `artists` items drawn from popularity and taste (affinity x `taste` / 2);
    plays = ceil(exp(1 + affinity + `spread` x N(0, 1))) (lognormal: a few pairs are played
    hundreds of times), so how much a user plays an item says how much it matches their taste.
    """
    rng = np.random.default_rng(seed)
    affinity, log_pop = _planted(n_users, n_items, dim, item_alpha, rng)
    n_art = np.minimum(1 + rng.poisson(max(artists - 1.0, 0.0), n_users), n_items // 4)
    users, items = _taste_topk(0.5 * taste * affinity + log_pop, n_art, rng)
    aff = affinity[users, items]
    plays = np.ceil(np.exp(1.0 + taste * 0.5 * aff + spread * rng.normal(size=users.size))).astype(np.int64)
    seconds = START + rng.integers(0, days * 86_400, users.size)
    order = np.argsort(seconds, kind="stable")
    return pl.DataFrame({"user": users[order].astype(np.int64), "item": items[order].astype(np.int64),
                         "plays": plays[order], "timestamp": seconds[order]})
