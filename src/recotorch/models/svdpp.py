"""SVD++ (Koren 2008): matrix factorisation whose user vector also sums the items the user rated.

    r(u, i) = squash(b_u + b_i + <q_i, p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j>)

N(u) is the set of the user's training items: *which* items someone rated says something about
them beyond the ratings' values (the implicit feedback in explicit data). The y_j are a second
set of item vectors, learnt with the others by the one `Trainer` (MSE, weight decay, one-cycle). `implicit_scale`
multiplies the implicit sum: under AdamW it sets how fast the y_j move relative to the other
tables (0.2, with 6 epochs of batches of 512, won on a validation split carved from ml-100k).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from recotorch.core.maths import squash
from recotorch.data.interactions import CSR, Interactions
from recotorch.models.base import register
from recotorch.models.gradient import RatingModel
from recotorch.models.mf import RatingRange
from recotorch.train.config import TrainConfig, int_range, log_uniform, param


class ImplicitAwareDot(nn.Module):
    """score(u, i) = squash(<p_u + z_u, q_i> + b_u + b_i), z_u the normalised sum of y_j over N(u).

    `history` (a CSR of each user's items) is a constant of the data, not a parameter: it is kept
    as non-persistent buffers and given again when a saved model is rebuilt.
    """

    def __init__(self, n_users: int, n_items: int, dim: int, history: CSR,
                 rating_range: tuple[float, float] | None, init_std: float, *, implicit_scale: float = 1.0,
                 sparse: bool = False) -> None:
        super().__init__()
        self.user_factors = nn.Embedding(n_users, dim, sparse=sparse)
        self.item_factors = nn.Embedding(n_items, dim, sparse=sparse)
        self.implicit = nn.Embedding(n_items, dim, sparse=sparse)
        self.user_bias = nn.Embedding(n_users, 1, sparse=sparse)
        self.item_bias = nn.Embedding(n_items, 1, sparse=sparse)
        self.implicit_scale, self.sparse = implicit_scale, sparse
        for table in (self.user_factors, self.item_factors, self.implicit):
            nn.init.normal_(table.weight, 0.0, init_std)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.register_buffer("indptr", history.indptr.clone(), persistent=False)
        self.register_buffer("indices", history.indices.clone(), persistent=False)
        self.rating_range = rating_range

    def user_vector(self, user_idx: torch.Tensor) -> torch.Tensor:
        """p_u + |N(u)|^-1/2 sum_j y_j, (B, dim): one embedding bag over the users' items."""
        starts = self.indptr[user_idx]
        lengths = self.indptr[user_idx + 1] - starts
        offsets = torch.cumsum(lengths, 0) - lengths
        owner = torch.repeat_interleave(torch.arange(user_idx.numel(), device=user_idx.device), lengths)
        flat = self.indices[starts[owner] + torch.arange(owner.numel(), device=owner.device) - offsets[owner]]
        weights = (self.implicit_scale * lengths.clamp(min=1).float().rsqrt())[owner]
        z = F.embedding_bag(flat, self.implicit.weight, offsets, mode="sum", per_sample_weights=weights,
                            sparse=self.sparse)
        return self.user_factors(user_idx) + z

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        dot = (self.user_vector(user_idx) * self.item_factors(item_idx)).sum(-1)
        raw = dot + self.user_bias(user_idx).squeeze(-1) + self.item_bias(item_idx).squeeze(-1)
        return squash(raw, self.rating_range)

    def score_all(self, user_idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        raw = torch.addmm(self.item_bias.weight.T, self.user_vector(user_idx), self.item_factors.weight.T, out=out)
        raw += self.user_bias(user_idx)
        return squash(raw, self.rating_range, inplace=True)


@register
class SVDpp(RatingModel):
    """Biased MF plus implicit item vectors summed over each user's rated items (SVD++).

    >>> SVDpp(dim=50).fit(train).predict([196], [242]).values
    """

    name = "svdpp"
    CAPABILITIES = frozenset({"similar_items", "item_vectors", "user_vectors", "item_biases", "user_biases"})
    TEST_PARAMS: ClassVar[dict[str, Any]] = {"dim": 4, "epochs": 2}

    @dataclass
    class Config(TrainConfig):
        dim: int = param(50, ge=1, help="factors per user and item", tune=int_range(8, 256, log=True))
        rating_range: RatingRange = param(  # noqa: RUF009 (a type alias)
            "auto", help='(lo, hi) the sigmoid maps onto; "auto" from the data; None: no squash')
        init_std: float = param(0.01, gt=0, help="standard deviation of the initial factors",
                                tune=log_uniform(1e-3, 0.3))
        implicit_scale: float = param(0.2, gt=0, help="multiplies the implicit sum |N(u)|^-1/2 sum y_j (with "
                                      "AdamW, in effect the implicit vectors' step size)", tune=log_uniform(0.05, 2.0))
        # chosen on a validation split carved from ml-100k's bench train (benchmarks/results/svdpp_defaults.md)
        epochs: int = 6
        batch_size: int = 512

    _history: CSR | None = None  # the training rows' items per user, while fitting (a load uses `seen_`)

    def _prepare(self, train: Interactions) -> None:
        super()._prepare(train)
        self._history = train.to_csr()

    def _build_module(self, n_users: int, n_items: int) -> ImplicitAwareDot:
        history = self._history if self._history is not None else self.seen_
        return ImplicitAwareDot(n_users, n_items, self.dim, history, self.rating_range_, self.init_std,
                                implicit_scale=self.implicit_scale, sparse=self.sparse_gradients)

    def _fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, extra = super()._fitted_state()
        return tensors, {**extra, "implicit_scale": self.implicit_scale}

    def _restore(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        # models saved before `implicit_scale` existed summed with 1.0 (their params lack the field)
        self.implicit_scale = float(extra.get("implicit_scale", 1.0))
        super()._restore(tensors, extra)

    def item_vectors(self) -> torch.Tensor:
        return self.module_.item_factors.weight.detach().cpu()

    def user_vectors(self) -> torch.Tensor:
        with torch.no_grad():
            return self.module_.user_vector(torch.arange(self.n_users, device=self.module_device)).cpu()

    def item_biases(self) -> torch.Tensor:
        return self.module_.item_bias.weight.detach().cpu().squeeze(1)

    def user_biases(self) -> torch.Tensor:
        return self.module_.user_bias.weight.detach().cpu().squeeze(1)
