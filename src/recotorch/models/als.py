"""Implicit ALS (Hu, Koren & Volinsky, 2008): weighted matrix factorisation by closed-form solves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import polars as pl
import torch

from recotorch.core.device import tensor_device
from recotorch.core.maths import als_solve, pad_rows
from recotorch.core.retrieval import RetrievalVectors
from recotorch.data.interactions import CSR, Interactions, build_csr
from recotorch.errors import OptionError
from recotorch.models.base import Estimator, NewRows, register
from recotorch.models.itemknn import coo
from recotorch.train import als_kernel
from recotorch.train.config import Params, int_range, log_uniform, param

# Cells of the (rows, dim, dim) Gram batch built per solve step.
GRAM_CELLS = 2**24


def confidence_scale(r: torch.Tensor, how: str) -> float:
    """The divisor of the weights in the confidence: their mean ("mean"; 1 when empty or all 0) or 1 ("none")."""
    if how == "none" or r.numel() == 0:
        return 1.0
    mean = float(r.double().mean())
    return mean if mean > 0 else 1.0



@register
class ImplicitALS(Estimator):
    """Weighted MF for implicit feedback: p_ui = 1 if observed else 0, confidence c_ui = 1 + alpha r_ui.

    Minimises sum_ui c_ui (p_ui - x_u . y_i)^2 + reg (|x_u|^2 + |y_i|^2) over ALL user-item
    pairs by alternating solves, each for every user at once (then every item):
    x_u = (Y^T Y + reg I + sum_{i in u} alpha r_ui y_i y_i^T)^-1 sum_{i in u} (1 + alpha r_ui) y_i.
    solver="cg" (default): `cg_steps` conjugate-gradient steps per solve, warm-started from the
    previous factors, as in Takacs et al. (2011): per step one (rows, dim) x (dim, dim) product
    for Y^T Y + reg I and one pass over each row's items (`recotorch.train.als_kernel`: compiled
    with Numba on CPU, parallel over rows; tensor operations on a GPU or without Numba).
    solver="cholesky": exact; the per-row Gram corrections
    are one sparse (rows x items) @ (items x dim^2) product and one batched Cholesky
    (memory: an (n_items, dim^2) table and Gram batches of ~2**24 cells; time ~ nnz x dim^2 +
    rows x dim^3, so keep dim <= ~64 there). No Python loop over users or items either way.

    r_ui is the training `rating` (1 for binary implicit data, or a count/weight from
    `to_implicit`) divided by the weights' mean (`weight_scale`); duplicate rows are summed.
    Why the mean: the confidence mass sum_ui alpha r_ui then equals alpha x nnz whatever the
    weights' units, as for 0/1 data, so `alpha` and `reg` keep their meaning and raw play counts
    (mean ~ hundreds) cannot drown Y^T Y; binary data is unchanged (mean 1). The median would
    not fix that mass (heavy tails put most of it far above the median). Defaults were chosen on a validation split of
    the ml-100k top-N protocol: test NDCG@10 0.159 (dim 64: 0.150), ~2 s to fit on one core.

    >>> ImplicitALS(dim=128, alpha=8.0, reg=30.0).fit(positives).recommend([196], k=10)
    """

    name = "als"
    task = "ranking"
    weight_scale_: float = 1.0
    CAPABILITIES = frozenset({"fold_in", "update", "retrieval_vectors", "similar_items", "item_vectors",
                              "user_vectors"})
    TEST_PARAMS: ClassVar[dict[str, Any]] = {"dim": 4, "iterations": 2}
    # never below binary on benchmarks/results/weights.md, best on repeat purchases (1.21-1.29x; log1p 1.04-1.16x)
    DEFAULT_WEIGHTS: ClassVar[str | None] = "count"

    @dataclass
    class Config(Params):
        dim: int = param(128, ge=1, help="factors per user and item", tune=int_range(8, 256, log=True))
        reg: float = param(30.0, ge=0, help="ridge strength", tune=log_uniform(1e-2, 1e3))
        alpha: float = param(8.0, ge=0, help="confidence c = 1 + alpha r / scale", tune=log_uniform(0.1, 100))
        weight_scale: Literal["mean", "none"] = param(
            "mean", help="scale dividing the weights r in the confidence: their mean (1 for 0/1 data) or none")
        iterations: int = param(10, ge=1, help="alternating passes (users, then items)", tune=int_range(2, 30))
        solver: Literal["cg", "cholesky"] = param("cg", help="cg (a few warm-started steps) or cholesky (exact)")
        cg_steps: int = param(3, ge=1, help="conjugate-gradient steps per solve")
        init_std: float = param(0.01, gt=0, help="std of the initial factors")
        seed: int = param(0, help="seeds the initial factors")
        device: str = param("cpu", help="cpu, cuda, cuda:1, or auto")

    @property
    def torch_device(self) -> torch.device:
        return tensor_device(self.device)

    def prepare_fit(self) -> None:
        if self.solver == "cg" and self.device == "cpu":
            als_kernel.warm_up_async()  # Numba's start-up overlaps with reading the data, not with the fit

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        dev = self.torch_device
        n_users, n_items = train.n_users, train.n_items
        r = train.rating.float() if train.rating is not None else torch.ones(len(train))
        keys, inverse = torch.unique(train.user_idx * n_items + train.item_idx, return_inverse=True)
        r = torch.zeros(keys.numel()).index_add_(0, inverse, r)  # duplicates summed
        if r.numel() and float(r.min()) < 0:
            raise OptionError("weights", f"ALS confidences need weights >= 0; the smallest is {float(r.min()):g}")
        self.weight_scale_ = confidence_scale(r, self.weight_scale)
        users, items = keys // n_items, keys % n_items
        conf = (self.alpha / self.weight_scale_) * r
        by_user = build_csr(users, items, n_users, conf)
        by_item = build_csr(items, users, n_items, conf)
        gen = torch.Generator().manual_seed(self.seed)
        user_f = (torch.randn(n_users, self.dim, generator=gen) * self.init_std).to(dev)
        item_f = (torch.randn(n_items, self.dim, generator=gen) * self.init_std).to(dev)
        solve = self._solve if self.solver == "cholesky" else self._solve_cg
        for _ in range(self.iterations):
            user_f = solve(by_user, item_f, user_f)
            item_f = solve(by_item, user_f, item_f)
        self.user_factors_, self.item_factors_ = user_f, item_f

    def _solve(self, rows: CSR, other: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """Exact least-squares factors for every row of the CSR `rows` (values alpha r) given `other`."""
        dev, d = other.device, self.dim
        base = other.T @ other + self.reg * torch.eye(d, device=dev)  # Y^T Y + reg I
        outer = (other[:, :, None] * other[:, None, :]).reshape(other.shape[0], d * d)  # y_i y_i^T
        n_rows = rows.n_rows
        out = torch.empty(n_rows, d, device=dev)
        step = max(1, GRAM_CELLS // (d * d))
        counts = rows.row_lengths()
        for start in range(0, n_rows, step):
            end = min(n_rows, start + step)
            lo, hi = int(rows.indptr[start]), int(rows.indptr[end])
            local = torch.repeat_interleave(torch.arange(end - start), counts[start:end]).to(dev)
            cols, conf = rows.indices[lo:hi].to(dev), rows.values[lo:hi].to(dev)
            coords = torch.stack([local, cols])
            weighted = coo(coords, conf, (end - start, other.shape[0]), True)
            plus_one = coo(coords, conf + 1.0, (end - start, other.shape[0]), True)
            gram = torch.sparse.mm(weighted, outer).view(-1, d, d) + base  # (c, d, d)
            rhs = torch.sparse.mm(plus_one, other)  # (c, d)
            chol = torch.linalg.cholesky(gram)
            out[start:end] = torch.cholesky_solve(rhs.unsqueeze(-1), chol).squeeze(-1)
        return out

    def _solve_cg(self, rows: CSR, other: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """`cg_steps` warm-started conjugate-gradient steps on every row's system (`als_kernel.cg_solve`)."""
        return als_kernel.cg_solve(rows.indptr, rows.indices, rows.values, other, current,  # type: ignore[arg-type]
                        self.reg, self.cg_steps)

    def score(self, user_idx: torch.Tensor, item_idx: torch.Tensor | None = None) -> torch.Tensor:
        if item_idx is None:
            return self.score_on_device(user_idx).cpu()
        u = self.user_factors_[user_idx.to(self.user_factors_.device)]
        return (u * self.item_factors_[item_idx.to(u.device)]).sum(-1).cpu()

    def score_on_device(self, user_idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return torch.mm(self.user_factors_[user_idx.to(self.user_factors_.device)], self.item_factors_.T, out=out)

    def item_vectors(self) -> torch.Tensor:
        return self.item_factors_.cpu()

    def user_vectors(self) -> torch.Tensor:
        return self.user_factors_.cpu()

    def retrieval_vectors(self) -> RetrievalVectors:
        """A plain dot product: x_u . y_i."""
        return RetrievalVectors(self.user_factors_.detach().float().cpu().contiguous(),
                                self.item_factors_.detach().float().cpu().contiguous())

    # ---- new users and updates ----------------------------------------------------------
    def fold_in(self, item_idx: torch.Tensor, values: torch.Tensor | None = None, *, reg: float | None = None,
                reg_bias: float | None = None, user_features: pl.DataFrame | None = None) -> torch.Tensor:
        """x_u (B, dim) by the ALS user solve, confidences 1 + alpha r (r = `values`, default 1)."""
        item_idx = item_idx.long()
        mask = item_idx >= 0
        r = values.float() if values is not None else torch.ones(item_idx.shape)
        r = torch.where(mask, r, torch.zeros(())) / self.weight_scale_
        lam = self.reg if reg is None else reg
        return als_solve(self.item_factors_.cpu(), item_idx, r, self.alpha, lam)

    def score_new_users(self, vectors: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return vectors @ self.item_factors_.cpu().T

    def update(self, rows: NewRows, *, reg: float | None = None, epochs: int = 0, lr: float | None = None) -> None:
        """Exact ALS solves: affected users over old (confidence 1) plus new items, new items over their users."""
        u, i, old_seen = rows.user_idx, rows.item_idx, rows.old_seen
        lam = self.reg if reg is None else reg
        r = torch.ones(u.numel()) if rows.rating is None else rows.rating / self.weight_scale_
        dim = self.item_factors_.shape[1]
        users = torch.cat([self.user_factors_.cpu(), torch.zeros(self.n_users - rows.old_users, dim)])
        items = torch.cat([self.item_factors_.cpu(), torch.zeros(self.n_items - rows.old_items, dim)])
        old_u = torch.repeat_interleave(torch.arange(old_seen.n_rows), old_seen.row_lengths())
        all_u, all_i = torch.cat([old_u, u]), torch.cat([old_seen.indices, i])
        all_r = torch.cat([torch.ones(old_u.numel()), r])
        affected = torch.unique(u)
        known = all_i < rows.old_items
        users[affected] = als_solve(items, *pad_rows(all_u[known], all_i[known], all_r[known], affected),
                                    self.alpha, lam)
        new_items = torch.arange(rows.old_items, self.n_items)
        if new_items.numel():
            items[new_items] = als_solve(users, *pad_rows(i, u, r, new_items), self.alpha, lam)
            users[affected] = als_solve(items, *pad_rows(all_u, all_i, all_r, affected), self.alpha, lam)
        self.user_factors_, self.item_factors_ = users.to(self.torch_device), items.to(self.torch_device)

    def _fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return ({"user_factors": self.user_factors_, "item_factors": self.item_factors_},
                {"weight_scale": self.weight_scale_})

    def _restore(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        dev = self.torch_device
        self.user_factors_ = tensors["user_factors"].to(dev)
        self.item_factors_ = tensors["item_factors"].to(dev)
        self.weight_scale_ = float(extra.get("weight_scale", 1.0))  # saved before weights were scaled: 1
