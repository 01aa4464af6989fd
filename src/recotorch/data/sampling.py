"""Vectorised negative sampling: items a user has not interacted with, drawn in one batch.

Known positives are found by binary search in one sorted key array `user * n_items + item`
(`torch.searchsorted`), so a membership test costs O(log nnz) per draw, on any device. Draws
that hit a positive are redrawn (only those, for a few rounds); whatever still collides after
that is drawn exactly from the user's complement (the r-th unseen item, found by one more
binary search), so every returned item is a true negative and the loop always ends.
"""

from __future__ import annotations

import math

import torch

from recotorch.data.interactions import CSR

__all__ = ["NegativeSampler", "sample_negatives"]


class NegativeSampler:
    """Draws negatives for a fixed catalogue and fixed seen sets; build once, sample per batch.

    n_items: catalogue size. seen: each user's positives (None: nothing excluded).
    weights: (n_items,) non-negative sampling weights, e.g. popularity ** 0.75 (None: uniform).
    max_rounds: rejection rounds before the exact fallback. device: where the keys live.
    Memory: two int64 arrays of the number of distinct positives.
    """

    def __init__(self, n_items: int, seen: CSR | None = None, weights: torch.Tensor | None = None,
                 max_rounds: int = 4, device: torch.device | str | None = None) -> None:
        if n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {n_items}")
        self.n_items = n_items
        self.max_rounds = max_rounds
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.weights = None if weights is None else weights.to(self.device, torch.float32)
        if self.weights is not None and (self.weights.numel() != n_items or (self.weights < 0).any()):
            raise ValueError("weights must be (n_items,) and non-negative")
        n_rows = 0 if seen is None else seen.n_rows
        if seen is None or seen.indices.numel() == 0:
            keys = torch.empty(0, dtype=torch.int64)
        else:
            rows = torch.repeat_interleave(torch.arange(n_rows), seen.row_lengths())
            keys = torch.unique(rows * n_items + seen.indices.to(torch.int64))  # sorted, distinct
        user = keys // n_items
        self.n_seen = torch.bincount(user, minlength=n_rows).to(self.device)  # (n_rows,)
        starts = torch.cumsum(self.n_seen.cpu(), 0) - self.n_seen.cpu()
        rank = torch.arange(keys.numel()) - starts[user]  # position within the user's sorted items
        self.keys = keys.to(self.device)  # (nnz,) sorted
        self.shifted = (keys - rank).to(self.device)  # user*n + (item - rank): sorted, for the fallback
        self.starts = starts.to(self.device)

    def contains(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Whether each (user, item) is a known positive; any matching shapes."""
        if self.keys.numel() == 0:
            return torch.zeros(item_idx.shape, dtype=torch.bool, device=item_idx.device)
        query = (user_idx * self.n_items + item_idx).to(self.keys.device)
        pos = torch.searchsorted(self.keys, query).clamp(max=self.keys.numel() - 1)
        return (self.keys[pos] == query).to(item_idx.device)

    def sample(self, user_idx: torch.Tensor, n_neg: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, n_neg) int64 items, none of them a positive of its row's user, on `user_idx`'s device.

        Draws use `generator` (on its device) or the global RNG. Raises ValueError if a user
        has no negative left (has seen every item).
        """
        dev = user_idx.device
        users = user_idx.to(self.device, torch.int64).reshape(-1, 1).expand(-1, n_neg)  # (B, n_neg)
        if self.keys.numel() and users.numel() and int(self.n_seen[users[:, 0]].max()) >= self.n_items:
            raise ValueError("a user has interacted with every item: no negative to sample")
        flat_users = users.reshape(-1)
        items = self.draw(flat_users.shape, generator)
        todo = self.contains(flat_users, items).nonzero().flatten()  # positions that hit a positive
        for _ in range(self.max_rounds):
            if todo.numel() == 0:
                break
            redraw = self.draw(todo.shape, generator)
            items[todo] = redraw
            todo = todo[self.contains(flat_users[todo], redraw)]  # recheck only the redrawn
        if todo.numel():  # rare: users who have seen most of the catalogue
            items[todo] = self._exact(flat_users[todo], generator)
        items = items.view(users.shape)
        return items.to(dev)

    def draw(self, shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None = None) -> torch.Tensor:
        """Items drawn from the catalogue (uniform or by `weights`); positives NOT excluded."""
        gdev = generator.device if generator is not None else self.device
        n = math.prod(shape)
        if self.weights is None:
            out = torch.randint(self.n_items, (n,), generator=generator, device=gdev)
        else:
            out = torch.multinomial(self.weights.to(gdev), n, replacement=True, generator=generator)
        return out.to(self.device).view(shape)

    def _exact(self, users: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Uniform over each user's unseen items: item = r + #{k : seen_k - k <= r}."""
        gdev = generator.device if generator is not None else self.device
        free = (self.n_items - self.n_seen[users]).to(torch.float64)
        u = torch.rand(users.shape, generator=generator, device=gdev, dtype=torch.float64).to(self.device)
        r = (u * free).long().clamp(max=self.n_items - 1)  # (m,) in [0, free)
        below = torch.searchsorted(self.shifted, users * self.n_items + r, right=True) - self.starts[users]
        return r + below


def sample_negatives(user_idx: torch.Tensor, n_items: int, n_neg: int, seen: CSR | None = None,
                     generator: torch.Generator | None = None, *, weights: torch.Tensor | None = None,
                     max_rounds: int = 4) -> torch.Tensor:
    """(B, n_neg) negatives for `user_idx` (B,): uniform (or by `weights`) and never in `seen`.

    Builds a `NegativeSampler` each call; keep one when sampling repeatedly from the same data.

    >>> gen = torch.Generator().manual_seed(0)
    >>> neg = sample_negatives(batch_users, model.n_items, 4, model.seen_, gen)  # (B, 4)
    """
    sampler = NegativeSampler(n_items, seen, weights, max_rounds, device=user_idx.device)
    return sampler.sample(user_idx, n_neg, generator)
