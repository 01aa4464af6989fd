"""A model's scores as inner products (`RetrievalVectors`), what an ANN index needs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recotorch.core.maths import squash


@dataclass(frozen=True)
class RetrievalVectors:
    """score(u, i) = squash(<users[u], items[i]> + user_offset[u]), `squash` monotonic.

    The sigmoid onto `rating_range` (or the identity when None) is monotonic, so ranking a user's
    items by the inner product alone is ranking them by the model's score.
    """

    users: torch.Tensor  # (n_users, d') float32, contiguous, CPU
    items: torch.Tensor  # (n_items, d') float32, contiguous, CPU
    user_offset: torch.Tensor | None = None  # (n_users,) e.g. the user bias b_u
    rating_range: tuple[float, float] | None = None  # sigmoid onto (lo, hi), or identity when None

    def model_scores(self, u: int, inner: torch.Tensor) -> torch.Tensor:
        """The model's own scores for user `u` from inner products with its items."""
        raw = inner if self.user_offset is None else inner + self.user_offset[u]
        return squash(raw, self.rating_range)
