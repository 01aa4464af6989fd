"""Optimisers for embedding tables: updates that touch only the rows a batch used.

A dense optimiser (AdamW) reads and writes every row of every table at every step, so its
cost grows with the catalogue, not the batch: on a 140k x 27k MovieLens-20M-sized problem it
spends almost all its time on rows the batch never saw. With `nn.Embedding(sparse=True)` the
gradient of a table is a row-sparse tensor (batch indices + values, uncoalesced), and these
optimisers update just those rows:

- `RowWiseAdagrad` ("rowwise_adagrad"): one accumulator per row (the mean squared gradient of
  the row, as in FBGEMM/TorchRec), applied with `index_add_` so repeated rows need no sort.
- `RowSparseAdam` ("sparse_adam"): lazy Adam on the touched rows (coalesces each gradient).

`weight_decay` on a row-sparse gradient is an L2 penalty on the touched rows, one share per
occurrence: gradient += weight_decay * row / nnz, i.e. the loss gains
weight_decay/2 * mean over the batch of |row|^2 (the classic per-rating regularisation of
SGD matrix factorisation). Dense gradients get ordinary L2 (gradient += weight_decay * p).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from recotorch.train.config import OptimizerName

SPARSE_OPTIMIZERS = ("sparse_adam", "rowwise_adagrad")


def make_optimizer(name: OptimizerName, params: Iterable[nn.Parameter], lr: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """The optimiser a `TrainConfig.optimizer` names."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.99))
    if name == "rowwise_adagrad":
        return RowWiseAdagrad(params, lr=lr, weight_decay=weight_decay)
    if name == "sparse_adam":
        return RowSparseAdam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of adamw, sparse_adam, rowwise_adagrad")


def _rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row indices (nnz,), values (nnz, *row_shape)) of a row-sparse COO gradient, uncoalesced."""
    return grad._indices()[0], grad._values()


class RowWiseAdagrad(torch.optim.Optimizer):
    """Adagrad with one accumulator per row: row -= lr * g / (sqrt(sum of mean(g^2)) + eps).

    Works on dense and row-sparse gradients; repeated rows in one sparse gradient are summed
    (index_add_), and each occurrence adds its own mean square to the row's accumulator.
    State per parameter: `sum`, shape (n_rows,) (a scalar for 0-d parameters).
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float = 0.1, weight_decay: float = 0.0,
                 eps: float = 1e-10, initial_accumulator_value: float = 0.0) -> None:
        if lr <= 0 or eps <= 0 or weight_decay < 0:
            raise ValueError("need lr > 0, eps > 0 and weight_decay >= 0")
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "eps": eps,
                                  "initial_accumulator_value": initial_accumulator_value})

    def _sum(self, p: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        state = self.state[p]
        if "sum" not in state:
            state["sum"] = torch.full(p.shape[:1], group["initial_accumulator_value"],
                                      dtype=torch.float32, device=p.device)
        return state["sum"]

    def state_sums(self, group: dict[str, Any]) -> dict[nn.Parameter, torch.Tensor]:
        """The accumulator of every parameter in `group` (made on first use)."""
        return {p: self._sum(p, group) for p in group["params"]}

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                acc = self._sum(p, group)
                if p.grad.is_sparse:
                    idx, g = _rows(p.grad)
                    if wd:
                        g = g.add(p.index_select(0, idx), alpha=wd / max(1, idx.numel()))
                    acc.index_add_(0, idx, g.float().square().reshape(idx.numel(), -1).mean(1))
                    scale = acc.index_select(0, idx).sqrt_().add_(eps).reciprocal_().mul_(-lr)
                    p.index_add_(0, idx, g * scale.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))
                else:
                    g = p.grad if not wd else p.grad.add(p, alpha=wd)
                    acc += g.float().square().reshape(*acc.shape, -1).mean(-1)
                    scale = acc.sqrt().add_(eps).reciprocal_().mul_(-lr)
                    p.add_(g * scale.view(*acc.shape, *([1] * (g.dim() - acc.dim()))).to(g.dtype))


class RowSparseAdam(torch.optim.Optimizer):
    """Lazy Adam: moments and parameters change only on the rows a sparse gradient touches.

    Dense gradients get ordinary Adam (with L2 weight decay). Each row's bias correction uses
    the parameter's step count, as `torch.optim.SparseAdam` does.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float = 1e-2, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.99), eps: float = 1e-8) -> None:
        if lr <= 0 or eps <= 0 or weight_decay < 0:
            raise ValueError("need lr > 0, eps > 0 and weight_decay >= 0")
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                step = float(state["step"])
                m, v = state["exp_avg"], state["exp_avg_sq"]
                size = lr * (1 - beta2**step) ** 0.5 / (1 - beta1**step)
                if p.grad.is_sparse:
                    grad = p.grad.coalesce()
                    idx, g = grad._indices()[0], grad._values()
                    if wd:
                        counts = torch.bincount(_rows(p.grad)[0], minlength=p.shape[0]).index_select(0, idx)
                        g = g + p.index_select(0, idx) * (wd * counts / p.grad._nnz()).view(-1, *[1] * (g.dim() - 1))
                    m_rows = m.index_select(0, idx).mul_(beta1).add_(g, alpha=1 - beta1)
                    v_rows = v.index_select(0, idx).mul_(beta2).addcmul_(g, g, value=1 - beta2)
                    m.index_copy_(0, idx, m_rows)
                    v.index_copy_(0, idx, v_rows)
                    p.index_add_(0, idx, m_rows / v_rows.sqrt_().add_(eps), alpha=-size)
                else:
                    g = p.grad if not wd else p.grad.add(p, alpha=wd)
                    m.mul_(beta1).add_(g, alpha=1 - beta1)
                    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                    p.addcdiv_(m, v.sqrt().add_(eps), value=-size)
