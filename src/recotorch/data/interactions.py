"""`Interactions`: the one type that carries interaction data through recotorch."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
import torch

from recotorch.data.vocab import Vocab

if TYPE_CHECKING:
    from recotorch.data.sequences import Sequences

Duplicates = Literal["aggregate", "keep"]


@dataclass(frozen=True)
class CSR:
    """Compressed sparse rows over index tensors: row r holds indices[indptr[r]:indptr[r+1]]."""

    indptr: torch.Tensor  # (n_rows + 1,) int64
    indices: torch.Tensor  # (nnz,) int64, sorted within each row
    values: torch.Tensor | None = None  # (nnz,) float32

    @property
    def n_rows(self) -> int:
        return self.indptr.numel() - 1

    def row(self, r: int) -> torch.Tensor:
        return self.indices[self.indptr[r] : self.indptr[r + 1]]

    def row_lengths(self) -> torch.Tensor:
        return self.indptr[1:] - self.indptr[:-1]

    def entries(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(position in `rows`, position in `indices`/`values`) of every entry of the selected rows.

        Vectorised (no loop over rows); rows may repeat and come in any order.
        """
        rows = rows.to(torch.int64).cpu()
        starts = self.indptr[rows]  # (B,)
        lengths = self.indptr[rows + 1] - starts  # (B,)
        which = torch.repeat_interleave(torch.arange(rows.numel()), lengths)  # (nnz_sel,)
        first = torch.cumsum(lengths, 0) - lengths  # (B,) offset of each row in the selection
        return which, starts[which] + torch.arange(which.numel()) - first[which]

    def select(self, rows: torch.Tensor) -> CSR:
        """A CSR of the selected rows, in the order given."""
        which, pos = self.entries(rows)
        indptr = torch.zeros(rows.numel() + 1, dtype=torch.int64)
        torch.cumsum(torch.bincount(which, minlength=rows.numel()), 0, out=indptr[1:])
        return CSR(indptr, self.indices[pos], None if self.values is None else self.values[pos])

    def to_torch_sparse(self, n_cols: int) -> torch.Tensor:
        values = self.values if self.values is not None else torch.ones(self.indices.numel())
        return torch.sparse_csr_tensor(self.indptr, self.indices, values, (self.n_rows, n_cols))

    def to_dense(self, n_cols: int) -> torch.Tensor:
        return self.to_torch_sparse(n_cols).to_dense()


def build_csr(rows: torch.Tensor, cols: torch.Tensor, n_rows: int, values: torch.Tensor | None = None) -> CSR:
    """CSR from coordinate lists (vectorised: one sort, one bincount)."""
    order = torch.argsort(rows * (int(cols.max()) + 1 if cols.numel() else 1) + cols, stable=True)
    counts = torch.bincount(rows, minlength=n_rows)
    indptr = torch.zeros(n_rows + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=indptr[1:])
    return CSR(indptr, cols[order], None if values is None else values[order])


@dataclass(frozen=True)
class Interactions:
    """Who interacted with what: index tensors over user and item vocabularies.

    `user_idx[n]` interacted with `item_idx[n]`, with optional `rating[n]` (explicit value, or a
    confidence weight for implicit feedback) and `timestamp[n]` (seconds). `users`/`items` map
    raw ids to indices; `user_features`/`item_features` hold side information, one row per
    vocabulary entry in index order, with the raw id in column `id`.

    Built from rows (`from_frame`, `read_interactions`), each (user, item) pair is one row
    (`recotorch.data.aggregate`): `rating` is the pair's latest value, `timestamp` its latest
    time, `count[n]` the rows merged into it and `value_sum[n]` the sum of their values; both
    are None when no rows were merged (each pair is one row: count 1, value_sum = rating).
    """

    user_idx: torch.Tensor
    item_idx: torch.Tensor
    users: Vocab
    items: Vocab
    rating: torch.Tensor | None = None
    timestamp: torch.Tensor | None = None
    user_features: pl.DataFrame | None = None
    item_features: pl.DataFrame | None = None
    source: str = "memory"
    meta: dict[str, Any] = field(default_factory=dict)
    count: torch.Tensor | None = None  # (n,) int64: rows merged into each pair (None: 1 each)
    value_sum: torch.Tensor | None = None  # (n,) float32: sum of their values (None: = rating)

    def __post_init__(self) -> None:
        n = self.user_idx.numel()
        for name in ("item_idx", "rating", "timestamp", "count", "value_sum"):
            t = getattr(self, name)
            if t is not None and t.numel() != n:
                raise ValueError(f"{name} has {t.numel()} entries but user_idx has {n}")
        too_big = n and (int(self.user_idx.max()) >= len(self.users) or int(self.item_idx.max()) >= len(self.items))
        if too_big:
            raise ValueError("an index is outside its vocabulary")

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        frame: pl.DataFrame,
        *,
        user: str = "user",
        item: str = "item",
        rating: str | None = "rating",
        timestamp: str | None = "timestamp",
        users: Vocab | None = None,
        items: Vocab | None = None,
        source: str = "memory",
        duplicates: Duplicates = "aggregate",
    ) -> Interactions:
        """Build from a DataFrame of raw ids; vocabularies are made from it unless given.

        duplicates: "aggregate" (default) merges rows of the same (user, item) into one pair
        (the latest value and time, the row count and value sum: `recotorch.data.aggregate`,
        counts in `meta`); "keep" keeps every row as it is (for splitting a log in time before
        aggregating each part).
        """
        if duplicates not in ("aggregate", "keep"):
            raise ValueError(f"duplicates must be 'aggregate' or 'keep', got {duplicates!r}")
        users = Vocab.from_values(frame[user]) if users is None else users
        items = Vocab.from_values(frame[item]) if items is None else items
        u = users.index(frame[user])
        i = items.index(frame[item])
        if (u < 0).any() or (i < 0).any():
            raise ValueError("some ids are not in the given vocabulary")
        has = lambda col: bool(col) and col in frame.columns  # noqa: E731
        r = frame[rating].cast(pl.Float32).to_numpy(writable=True) if has(rating) else None
        t = frame[timestamp].cast(pl.Int64).to_numpy(writable=True) if has(timestamp) else None
        built = cls(
            torch.from_numpy(u),
            torch.from_numpy(i),
            users,
            items,
            None if r is None else torch.from_numpy(r),
            None if t is None else torch.from_numpy(t),
            source=source,
        )
        if duplicates == "keep":
            return replace(built, meta={"rows_in": len(built), "duplicates": "kept"})
        return built.aggregated(value_name=rating if has(rating) else "rating")  # type: ignore[arg-type]

    def aggregated(self, *, value_name: str = "rating", announce: bool = True) -> Interactions:
        """One row per (user, item) pair, the one duplicate policy (`recotorch.data.aggregate`)."""
        from recotorch.data.aggregate import aggregate

        return aggregate(self, value_name=value_name, announce=announce)

    def row_counts(self) -> torch.Tensor:
        """Rows behind each entry, (n,) float32 (1 where nothing was merged)."""
        return torch.ones(len(self)) if self.count is None else self.count.float()

    def value_sums(self) -> torch.Tensor | None:
        """Sum of the values behind each entry, (n,) float32 (the rating where nothing was merged)."""
        return self.rating if self.value_sum is None else self.value_sum

    # ---- basic facts --------------------------------------------------------------------
    def __len__(self) -> int:
        return self.user_idx.numel()

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        extras = [name for name in ("rating", "timestamp") if getattr(self, name) is not None]
        extras += [f"{k}({len(v.columns) - 1} cols)" for k, v in
                   (("user_features", self.user_features), ("item_features", self.item_features)) if v is not None]
        density = len(self) / max(1, self.n_users * self.n_items)
        return (f"Interactions({len(self):,} rows, {self.n_users:,} users x {self.n_items:,} items, "
                f"density {density:.4%}, with {', '.join(extras) or 'ids only'}; from {self.source})")

    # ---- derived views ------------------------------------------------------------------
    def subset(self, rows: torch.Tensor) -> Interactions:
        """The same vocabularies over a subset of rows (boolean mask or index tensor)."""
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return replace(self, user_idx=self.user_idx[rows], item_idx=self.item_idx[rows],
                       rating=pick(self.rating), timestamp=pick(self.timestamp),
                       count=pick(self.count), value_sum=pick(self.value_sum))

    def compact(self) -> Interactions:
        """Drop users and items that have no rows; indices renumbered, features kept aligned."""
        u_keep = torch.unique(self.user_idx)
        i_keep = torch.unique(self.item_idx)
        if u_keep.numel() == self.n_users and i_keep.numel() == self.n_items:
            return self
        u_map = torch.full((self.n_users,), -1, dtype=torch.int64)
        u_map[u_keep] = torch.arange(u_keep.numel())
        i_map = torch.full((self.n_items,), -1, dtype=torch.int64)
        i_map[i_keep] = torch.arange(i_keep.numel())
        take = lambda df, keep: None if df is None else df[keep.numpy()]  # noqa: E731
        return replace(
            self,
            user_idx=u_map[self.user_idx],
            item_idx=i_map[self.item_idx],
            users=Vocab(self.users.ids.gather(u_keep.numpy())),
            items=Vocab(self.items.ids.gather(i_keep.numpy())),
            user_features=take(self.user_features, u_keep),
            item_features=take(self.item_features, i_keep),
        )

    def reindex(self, users: Vocab, items: Vocab) -> tuple[Interactions, torch.Tensor]:
        """Map rows onto other vocabularies; returns (known rows re-indexed, mask of known rows)."""
        u = torch.from_numpy(users.index(self.users.ids.gather(self.user_idx.numpy())))
        i = torch.from_numpy(items.index(self.items.ids.gather(self.item_idx.numpy())))
        known = (u >= 0) & (i >= 0)
        moved = replace(self, user_idx=u, item_idx=i, users=users, items=items,
                        user_features=None, item_features=None).subset(known)
        return moved, known

    def to_sequences(self) -> Sequences:
        """Each user's items ordered by time, ties by row order (see `recotorch.data.sequences`)."""
        from recotorch.data.sequences import to_sequences

        return to_sequences(self)

    def to_csr(self, values: bool = False) -> CSR:
        """Items of each user as CSR index tensors (the seen-item sets)."""
        return build_csr(self.user_idx, self.item_idx, self.n_users, self.rating if values else None)

    def to_frame(self, counts: bool = False) -> pl.DataFrame:
        """Raw ids (and rating/timestamp) as a DataFrame; `counts=True` adds each pair's `count`
        (rows merged) and `value_sum`."""
        cols: dict[str, Any] = {
            "user": self.users.ids.gather(self.user_idx.numpy()),
            "item": self.items.ids.gather(self.item_idx.numpy()),
        }
        if self.rating is not None:
            cols["rating"] = self.rating.numpy()
        if self.timestamp is not None:
            cols["timestamp"] = self.timestamp.numpy()
        if counts:
            cols["count"] = self.row_counts().long().numpy()
            if self.rating is not None:
                cols["value_sum"] = self.value_sums().numpy()  # type: ignore[union-attr]
        return pl.DataFrame(cols)

    def item_popularity(self) -> torch.Tensor:
        """Number of rows per item, (n_items,)."""
        return torch.bincount(self.item_idx, minlength=self.n_items)

    def with_features(self, *, user_features: pl.DataFrame | None = None,
                      item_features: pl.DataFrame | None = None) -> Interactions:
        """Attach side features (a frame with column `id`), aligned to the vocabularies."""
        return replace(
            self,
            user_features=self.user_features if user_features is None else align_features(user_features, self.users),
            item_features=self.item_features if item_features is None else align_features(item_features, self.items),
        )


def align_features(features: pl.DataFrame, vocab: Vocab) -> pl.DataFrame:
    """One row per vocabulary entry in index order (missing ids get nulls)."""
    if "id" not in features.columns:
        raise ValueError("side features need an `id` column")
    keyed = features.with_columns(pl.col("id").cast(vocab.ids.dtype, strict=False))
    return pl.DataFrame({"id": vocab.ids}).join(keyed, on="id", how="left", maintain_order="left")
