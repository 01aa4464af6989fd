"""`Sequences`: each user's items in the order they were touched, for next-item models.

One type for training, evaluation and serving: offsets into one flat item tensor (CSR-style),
with a right-aligned padded view (`padded`) and training windows (`windows`) built by tensor ops,
never a Python loop over users. Order is by timestamp; equal timestamps keep the file order
(a later row counts as later), so the order is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recotorch.data.interactions import Interactions

__all__ = ["PAD", "Sequences", "from_padded", "tie_groups", "to_sequences"]

PAD = -1  # the padding index of every padded view


@dataclass(frozen=True)
class Sequences:
    """Row u holds user u's item indices in time order: items[indptr[u]:indptr[u+1]]."""

    indptr: torch.Tensor  # (n_users + 1,) int64
    items: torch.Tensor  # (nnz,) int64, time order within each row
    n_items: int

    @property
    def n_users(self) -> int:
        return self.indptr.numel() - 1

    def lengths(self) -> torch.Tensor:
        """(n_users,) items per user."""
        return self.indptr[1:] - self.indptr[:-1]

    def row(self, u: int) -> torch.Tensor:
        return self.items[self.indptr[u] : self.indptr[u + 1]]

    def padded(self, rows: torch.Tensor | None = None, max_len: int | None = None) -> torch.Tensor:
        """(B, L) the last `max_len` items of the chosen rows, right-aligned (last item in column L-1), PAD before.

        `max_len=None`: the longest selected row.
        """
        rows = torch.arange(self.n_users) if rows is None else rows.to(torch.int64).cpu()
        ends = self.indptr[rows + 1]
        lengths = ends - self.indptr[rows]
        width = int(lengths.max()) if max_len is None and rows.numel() else (max_len or 0)
        offset = torch.arange(width) - width  # (L,) -L .. -1 from each row's end
        pos = ends[:, None] + offset[None, :]  # (B, L)
        valid = offset[None, :] >= -lengths[:, None]
        out = torch.full(pos.shape, PAD, dtype=torch.int64)
        out[valid] = self.items[pos[valid]]
        return out

    def _window_ends(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(row of each training window (W,), exclusive local end of each window (W,)), as `windows` cuts them."""
        lengths = self.lengths()
        count = torch.where(lengths >= 2, torch.div(lengths - 1 + length - 1, length, rounding_mode="floor"), 0)
        user = torch.repeat_interleave(torch.arange(self.n_users), count)  # (W,)
        first = torch.cumsum(count, 0) - count
        j = torch.arange(user.numel()) - first[user]  # window number from the end
        return user, lengths[user] - j * length

    def windows(self, length: int, values: torch.Tensor | None = None) -> torch.Tensor:
        """Training windows (W, length + 1), right-aligned, PAD before: each row of n >= 2 items is cut
        from its end into pieces of `length` targets (the window ending at n, n - length, ...), every
        piece carrying the one item before it as the first input, so each transition is a target once.
        `values` (aligned with `items`, e.g. `tie_groups`) is cut the same way instead of the items."""
        user, end = self._window_ends(length)
        local = end[:, None] + torch.arange(-length - 1, 0)[None, :]  # (W, length + 1)
        out = torch.full(local.shape, PAD, dtype=torch.int64)
        valid = local >= 0
        out[valid] = (self.items if values is None else values)[(self.indptr[user][:, None] + local)[valid]]
        return out

    def window_prefixes(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For each row of `windows(length)`: (offset into `items` (W,), count (W,)) of the row's items
        before the window (the history a window's first position already has)."""
        user, end = self._window_ends(length)
        return self.indptr[user], (end - length - 1).clamp(min=0)

    def select(self, rows: torch.Tensor) -> Sequences:
        """The chosen rows, in the order given."""
        rows = rows.to(torch.int64).cpu()
        lengths = self.lengths()[rows]
        indptr = torch.zeros(rows.numel() + 1, dtype=torch.int64)
        torch.cumsum(lengths, 0, out=indptr[1:])
        which = torch.repeat_interleave(torch.arange(rows.numel()), lengths)
        pos = self.indptr[rows][which] + torch.arange(which.numel()) - indptr[:-1][which]
        return Sequences(indptr, self.items[pos], self.n_items)

    def drop_last(self, k: int = 1) -> tuple[Sequences, torch.Tensor]:
        """(each row without its last k items, the k-th last item of each row (-1 where a row is shorter))."""
        lengths = self.lengths()
        keep = (lengths - k).clamp(min=0)
        target = torch.full_like(lengths, PAD)
        has = lengths >= k
        target[has] = self.items[self.indptr[1:][has] - k]
        mask = torch.arange(self.items.numel()) - torch.repeat_interleave(self.indptr[:-1], lengths) < \
            torch.repeat_interleave(keep, lengths)
        indptr = torch.zeros_like(self.indptr)
        torch.cumsum(keep, 0, out=indptr[1:])
        return Sequences(indptr, self.items[mask], self.n_items), target

    def state(self, prefix: str = "sequences") -> dict[str, torch.Tensor]:
        """Tensors for a model directory."""
        return {f"{prefix}.indptr": self.indptr, f"{prefix}.indices": self.items}

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], n_items: int, prefix: str = "sequences") -> Sequences:
        return cls(tensors[f"{prefix}.indptr"], tensors[f"{prefix}.indices"], n_items)


def time_order(data: Interactions) -> torch.Tensor:
    """Row positions sorted by (user, timestamp, row position)."""
    if data.timestamp is None:
        raise ValueError(f"{data.source}: ordering a user's items needs a timestamp column (none was read); "
                         "name it with --time-col")
    by_time = torch.argsort(data.timestamp, stable=True)  # ties keep file order
    return by_time[torch.argsort(data.user_idx[by_time], stable=True)]


def tie_groups(data: Interactions) -> torch.Tensor:
    """For each position of `to_sequences(data).items`: the number of its (user, timestamp) group, counted
    from 0 in that order, so items a user touched in the same second share a number (rating logs store
    many: on ml-100k half of the consecutive pairs are tied, and their file order carries no signal)."""
    order = time_order(data)
    user, stamp = data.user_idx[order], data.timestamp[order]  # type: ignore[index]
    starts = torch.ones(order.numel(), dtype=torch.int64)
    starts[1:] = ((user[1:] != user[:-1]) | (stamp[1:] != stamp[:-1])).long()
    return torch.cumsum(starts, 0) - 1


def to_sequences(data: Interactions) -> Sequences:
    """Each user's items ordered by time (ties by file order), over `data`'s vocabularies.

    Needs timestamps (ValueError naming the source otherwise).
    """
    order = time_order(data)
    counts = torch.bincount(data.user_idx, minlength=data.n_users)
    indptr = torch.zeros(data.n_users + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=indptr[1:])
    return Sequences(indptr, data.item_idx[order].clone(), data.n_items)


def from_padded(item_idx: torch.Tensor, n_items: int) -> Sequences:
    """Sequences from padded rows (B, L) in order, PAD (any negative) anywhere dropped."""
    item_idx = item_idx.to(torch.int64).cpu()
    keep = item_idx >= 0
    indptr = torch.zeros(item_idx.shape[0] + 1, dtype=torch.int64)
    torch.cumsum(keep.sum(1), 0, out=indptr[1:])
    return Sequences(indptr, item_idx[keep], n_items)
