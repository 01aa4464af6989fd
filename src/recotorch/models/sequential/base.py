"""`SequenceModel`: what every next-item model shares (stored sequences, scoring from a history, metrics)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from recotorch.core.topk import top_k
from recotorch.data.interactions import CSR, Interactions, build_csr
from recotorch.data.sequences import Sequences, from_padded, time_order, to_sequences
from recotorch.errors import UnknownIdError
from recotorch.models.base import Estimator, Recommendations


class SequenceModel(Estimator):
    """A ranking model that scores the next item from the user's ordered history.

    Subclasses write `_represent(history)` (right-aligned (B, L) item indices, -1 padding ->
    a representation (B, D)) and `_score_represented(rep)` ((B, n_items) scores).
    """

    task = "ranking"
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"fold_in", "next_items"})
    sequences_: Sequences
    max_len: int = 50

    @property
    def context_length(self) -> int:
        """How many of the latest items the model reads."""
        return self.max_len

    @abstractmethod
    def _represent(self, history: torch.Tensor) -> torch.Tensor:
        """Representations (B, D) of right-aligned histories (B, L), -1 = padding."""

    @abstractmethod
    def _score_represented(self, rep: torch.Tensor) -> torch.Tensor:
        """Scores (B, n_items) of `_represent` output, on the model's device."""

    def _store_sequences(self, train: Interactions) -> None:
        self.sequences_ = to_sequences(train)

    def fit(self, train: Interactions, valid: Interactions | None = None, **kwargs: Any) -> SequenceModel:
        """Fit as `Estimator.fit`; validation rows (which come after the training rows, e.g. the second-to-last
        item of `splits.user_last(..., validation=True)`) are then appended to the stored histories and seen
        items, so `recommend` and the test protocol read the whole history."""
        super().fit(train, valid, **kwargs)
        if valid is not None and len(valid):
            self._append(valid)
        return self

    def _append(self, rows: Interactions) -> None:
        """Append `rows` (raw ids; time order per user) after each known user's stored sequence."""
        rows, _ = rows.reindex(self.users_, self.items_)
        if len(rows) == 0:
            return
        old = self.sequences_
        order = time_order(rows)
        users = torch.cat([torch.repeat_interleave(torch.arange(old.n_users), old.lengths()), rows.user_idx[order]])
        items = torch.cat([old.items, rows.item_idx[order]])
        by_user = torch.argsort(users, stable=True)  # a user's stored items first, then the new ones in time order
        indptr = torch.zeros_like(old.indptr)
        torch.cumsum(torch.bincount(users, minlength=old.n_users), 0, out=indptr[1:])
        self.sequences_ = Sequences(indptr, items[by_user], old.n_items)
        key = torch.unique(users * old.n_items + items)
        self.seen_ = build_csr(key // old.n_items, key % old.n_items, old.n_users)

    # ---- scoring ------------------------------------------------------------------------
    def score_history(self, history: torch.Tensor) -> torch.Tensor:
        """Scores (B, n_items) on the model's device for right-aligned histories (B, L)."""
        with torch.no_grad():
            return self._score_represented(self._represent(history[:, -self.context_length:]))

    def score_on_device(self, user_idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return self.score_history(self.sequences_.padded(user_idx, self.context_length))

    def score(self, user_idx: torch.Tensor, item_idx: torch.Tensor | None = None) -> torch.Tensor:
        if item_idx is None:
            return self.score_on_device(user_idx).float().cpu()
        full = self.score_on_device(user_idx)
        return full.gather(1, item_idx.to(full.device)[:, None])[:, 0].float().cpu()

    # ---- fold-in: a new user's ordered history ------------------------------------------
    def fold_in(self, item_idx: torch.Tensor, values: torch.Tensor | None = None, *, reg: float | None = None,
                reg_bias: float | None = None, user_features: Any = None) -> torch.Tensor:
        """Representations (B, D) of ordered histories item_idx (B, L) (model indices in the order touched,
        -1 = padding anywhere); `values` and the priors are ignored: only the order counts."""
        history = from_padded(item_idx, self.n_items).padded(max_len=self.context_length)
        with torch.no_grad():
            return self._represent(history)

    def score_new_users(self, vectors: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._score_represented(vectors).float().cpu()

    def recommend_history(self, items: Sequence[Any], k: int = 10, *, exclude_seen: bool = True) -> Recommendations:
        """Top-k next items for an anonymous user from the raw ids they touched, oldest first.

        The history's items are left out unless `exclude_seen=False` (repeats allowed). An id the
        model does not know raises `UnknownIdError` (none is dropped silently).
        """
        items = list(items)
        idx = torch.from_numpy(self.items_.index(items))
        if (idx < 0).any():
            missing = [items[j] for j in (idx < 0).nonzero().flatten().tolist()[:5]]
            raise UnknownIdError(f"unknown item id(s) in the history: {missing}")
        return Recommendations(["history"], *self.recommend_history_indices(idx[None], k, exclude_seen=exclude_seen),
                               self.items_)

    def recommend_history_indices(self, item_idx: torch.Tensor, k: int = 10, *, exclude_seen: bool = True,
                                  mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`recommend_history` for padded model indices (B, L): (items (B, k), scores (B, k)) on the CPU.

        `mask` (n_items,) bool: the allowed candidates (None: all); -1 / -inf fill slots nothing is left for.
        """
        seqs = from_padded(item_idx, self.n_items)
        scores = self.score_history(seqs.padded(max_len=self.context_length)).float()
        if mask is not None:
            scores[:, ~mask.to(scores.device)] = -torch.inf
        exclude = None
        if exclude_seen:
            exclude = CSR(seqs.indptr, seqs.items)
        idx, val = top_k(scores, min(k, self.n_items), exclude=exclude, inplace=True)
        return idx.cpu(), val.cpu()

    # ---- next-item metrics (validation) -------------------------------------------------
    def next_item_ranks(self, history: Sequences, targets: torch.Tensor, *, exclude_seen: bool = True,
                        batch_size: int = 1024) -> torch.Tensor:
        """1-based rank (n,) of each target among all items given its history (history items excluded);
        -inf ties count against the target (pessimistic)."""
        ranks = []
        for start in range(0, targets.numel(), batch_size):
            rows = torch.arange(start, min(start + batch_size, targets.numel()))
            scores = self.score_history(history.padded(rows, self.context_length)).float().cpu()
            if exclude_seen:
                which, pos = CSR(history.indptr, history.items).entries(rows)
                scores[which, history.items[pos]] = -torch.inf
            target = scores.gather(1, targets[rows][:, None])
            ranks.append((scores > target).sum(1) + (scores == target).sum(1))
        return torch.cat(ranks) if ranks else torch.empty(0, dtype=torch.int64)

    def _valid_targets(self, valid: Interactions) -> tuple[Sequences, torch.Tensor]:
        """(stored histories of the validated users, their earliest validation item)."""
        seqs = to_sequences(valid) if valid.timestamp is not None else None
        if seqs is None:
            raise ValueError("validation rows need timestamps to pick each user's next item")
        has = seqs.lengths() > 0
        users = has.nonzero().flatten()
        return self.sequences_.select(users), seqs.items[seqs.indptr[users]]

    def _valid_ndcg(self, valid: Interactions, k: int = 10) -> float:
        history, targets = self._valid_targets(valid)
        ranks = self.next_item_ranks(history, targets)
        return float(torch.where(ranks <= k, 1.0 / torch.log2(ranks.double() + 1), 0.0).mean())

    # ---- files --------------------------------------------------------------------------
    def _sequence_state(self) -> dict[str, torch.Tensor]:
        return self.sequences_.state()

    def _restore_sequences(self, tensors: dict[str, torch.Tensor], n_items: int) -> None:
        self.sequences_ = Sequences.from_state(tensors, n_items)
