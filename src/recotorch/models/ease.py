"""EASE (Steck, 2019): a closed-form linear item-item model, strong and fast on small catalogues."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from recotorch.data.interactions import Interactions
from recotorch.models.base import register
from recotorch.models.itemknn import ItemItemModel, RecencyConfig, distinct_pairs, gram_blocks
from recotorch.train.config import log_uniform, param


@register
class EASE(ItemItemModel):
    """Embarrassingly shallow autoencoder: score(u) = x_u @ B with x_u the user's 0/1 row.

    B minimises ||X - X B||^2 + lambda ||B||^2 subject to diag(B) = 0, which has the closed form
    P = (X^T X + lambda I)^-1, B = I - P / diag(P) (column-wise), i.e. B_ij = -P_ij / P_jj.
    `reg` is lambda: 100 was best on a validation split of the ml-100k top-N protocol (test
    NDCG@10 0.158; 50-300 all within 0.004). The inverse is taken in float64 (`dtype`), then
    B is kept in float32.

    Recency (`half_life`, see `recotorch.models.itemknn`): x_u weights the user's items by
    0.5 ** (later rows / (half_life x the user's rows)); B is unchanged. On the ml-100k top-N
    protocol (test = each user's latest positives), `EASE(reg=400, half_life=0.2)`, chosen on a
    validation split carved from the training part (last 20% of each user's train positives;
    reg 200-500 x half_life 0.2-0.3 all gave 0.180-0.184 there, 0.149 without recency), lifts
    test NDCG@10 from 0.158 to 0.173. Fitting needs timestamps; the default (None) does not.

    Memory: B is dense, n_items^2 floats (11 MB for 1,682 items, 1.6 GB for 20,000); fitting
    needs about three such matrices in `dtype` and O(n_items^3) time, so keep the catalogue
    below ~20-30k items (filter rare items first). Scoring costs nnz(batch rows) x n_items.

    >>> EASE(reg=100).fit(positives).recommend([196], k=10)
    """

    name = "ease"
    TEST_PARAMS: ClassVar[dict[str, Any]] = {"reg": 10.0}

    @dataclass
    class Config(RecencyConfig):
        reg: float = param(100.0, gt=0, help="ridge strength on the item-item weights", tune=log_uniform(1.0, 1e4))
        dtype: Literal["float32", "float64"] = param("float64", help="precision of the solve")

    def _fit_links(self, train: Interactions, valid: Interactions | None) -> None:
        dtype = getattr(torch, self.dtype)
        dev = self.torch_device
        users, items = distinct_pairs(train)
        n = train.n_items
        gram = torch.empty(n, n, dtype=dtype, device=dev)
        for start, block in gram_blocks(users, items, torch.ones(users.numel()), train.n_users, n, dev):
            gram[start : start + block.shape[0]] = block.to(dtype)
        gram.diagonal().add_(self.reg)
        precision = torch.cholesky_inverse(torch.linalg.cholesky(gram))  # P, symmetric positive definite
        del gram
        weights = precision / (-precision.diagonal())[None, :]  # B_ij = -P_ij / P_jj
        weights.diagonal().zero_()
        self.weights_ = weights.float()

    def _propagate(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(rows, self.weights_)

    def score_new_users(self, vectors: torch.Tensor) -> torch.Tensor:
        """x @ W as one dense product (W is dense)."""
        with torch.no_grad():
            return (vectors.to(self.weights_.device) @ self.weights_).cpu()

    def _grow_items(self, old_items: int) -> None:
        w = torch.zeros(self.n_items, self.n_items, device=self.weights_.device)
        w[:old_items, :old_items] = self.weights_
        self.weights_ = w

    def _links(self, item_idx: torch.Tensor) -> torch.Tensor:
        return self.weights_[item_idx.to(self.weights_.device)].cpu()

    def _fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {"weights": self.weights_, **self._profile_state()}, {}

    def _restore(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        self.weights_ = tensors["weights"].to(self.torch_device)
        self._restore_profile(tensors)
