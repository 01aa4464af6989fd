"""A fused training step for dot-bias matrix factorisation: analytic gradients, row-wise updates.

For `DotBias` under MSE with `optimizer="rowwise_adagrad"`, one step is a handful of tensor
operations over the batch and nothing over the tables: gather the batch's user and item rows,
score, form the gradients by hand (no autograd graph), and update just those rows with
row-wise Adagrad through `index_add_` (repeated rows need no sort). Work buffers are reused
between steps, which on CPUs avoids page-faulting a fresh (batch, dim) allocation per operation.

The arithmetic is exactly `RowWiseAdagrad` applied to the autograd gradients of
`DotBias(sparse=True)`, and the accumulators live in that optimiser's state, so checkpoints,
resume and the learning-rate schedule are shared with the generic path (tests check both
paths agree). The `Trainer` uses it for single-process fp32 runs without gradient
accumulation; otherwise it falls back to the generic path.
"""

from __future__ import annotations

import torch
from torch import nn

from recotorch.train import mf_kernel
from recotorch.train.optimizers import RowWiseAdagrad


class FusedDotBiasStep:
    """`step(data, rows, optimizer) -> loss` for squash(<p_u, q_i> + b_u + b_i) under mean squared error.

    `data` holds "user_idx", "item_idx" and "rating" for every training row, `rows` the batch's
    row numbers (the compiled kernel reads them in place: no gathered batch); the four weights are the module's
    `user_factors`, `item_factors` (n, dim) and `user_bias`, `item_bias` (n, 1) parameters;
    `rating_range` is the sigmoid's (lo, hi), or None for a plain dot product. With `compiled`
    (the default) CPU float32 tables are updated by the Numba kernel of `mf_kernel` when Numba is
    installed, the same arithmetic several times faster; otherwise by the tensor operations below.
    """

    def __init__(self, user_factors: nn.Parameter, item_factors: nn.Parameter, user_bias: nn.Parameter,
                 item_bias: nn.Parameter, rating_range: tuple[float, float] | None, compiled: bool = True) -> None:
        self.params = (user_factors, item_factors, user_bias, item_bias)
        self.rating_range = rating_range
        self.compiled = compiled
        self._buffers: tuple[torch.Tensor, ...] = ()

    def _work(self, n: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Four (n, dim) work tensors, reused while batches are no larger than the first."""
        if not self._buffers or self._buffers[0].shape[0] < n or self._buffers[0].device != like.device:
            self._buffers = tuple(torch.empty((n, like.shape[1]), dtype=like.dtype, device=like.device)
                                  for _ in range(4))
        return tuple(b[:n] for b in self._buffers)

    def prepare(self) -> None:
        """Compile (or load from Numba's cache) the kernel before training, so no epoch pays for it."""
        if self.compiled and mf_kernel.supports(*self.params):
            mf_kernel.warm_up()

    @torch.no_grad()
    def __call__(self, data: dict[str, torch.Tensor], rows: torch.Tensor,
                 optimizer: torch.optim.Optimizer) -> torch.Tensor:
        if not isinstance(optimizer, RowWiseAdagrad):
            raise TypeError("the fused step applies row-wise Adagrad; the trainer's optimizer must be one")
        group = optimizer.param_groups[0]
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        P, Q, bu, bi = self.params
        n = rows.numel()
        pu, qi, g_p, g_q = self._work(n, P)
        state = optimizer.state_sums(group)
        columns = (data["user_idx"], data["item_idx"], data["rating"])
        if self.compiled and mf_kernel.supports(*self.params, *(state[p] for p in self.params), data["rating"]):
            sums = tuple(state[p] for p in self.params)
            return torch.tensor(mf_kernel.dot_bias_adagrad_step(self.params, sums, *columns, rows, lr, wd, eps,
                                                                self.rating_range, (g_p, g_q)))
        u, i, target = (c.index_select(0, rows) for c in columns)
        torch.index_select(P, 0, u, out=pu)  # (B, dim)
        torch.index_select(Q, 0, i, out=qi)
        raw = torch.linalg.vecdot(pu, qi)  # (B,): one pass, no (B, dim) temporary
        raw += bu.view(-1).index_select(0, u)
        raw += bi.view(-1).index_select(0, i)
        if self.rating_range is None:
            pred, slope = raw, 2.0 / n
        else:
            lo, hi = self.rating_range
            s = torch.sigmoid(raw)
            pred = s * (hi - lo) + lo
            slope = s * (1 - s) * (2.0 * (hi - lo) / n)  # d mean(err^2) / d raw, over err
        err = pred - target
        loss = err.square().mean()
        g = (err * slope).unsqueeze(1)  # (B, 1): d loss / d raw
        torch.mul(qi, g, out=g_p)
        torch.mul(pu, g, out=g_q)
        if wd:  # L2 on the touched rows, as RowWiseAdagrad does for sparse gradients
            g_p.add_(pu, alpha=wd / n)
            g_q.add_(qi, alpha=wd / n)
        _update(P, u, g_p, state[P], lr, eps)
        _update(Q, i, g_q, state[Q], lr, eps)
        g = g.view(-1)
        for param, idx in ((bu, u), (bi, i)):
            b, acc = param.view(-1), state[param]  # (n,) views: 1-D index ops are cheaper
            g_b = g.clone() if not wd else torch.add(g, b.index_select(0, idx), alpha=wd / n)
            acc.index_add_(0, idx, g_b * g_b)
            b.index_add_(0, idx, g_b.mul_(acc.index_select(0, idx).sqrt_().add_(eps).reciprocal_().mul_(-lr)))
        return loss


def _update(weight: torch.Tensor, idx: torch.Tensor, grad: torch.Tensor, acc: torch.Tensor, lr: float,
            eps: float) -> None:
    """Row-wise Adagrad on rows `idx` of `weight`, given their gradients (overwritten)."""
    acc.index_add_(0, idx, torch.linalg.vecdot(grad, grad).div_(grad.shape[1]))  # mean square per row
    scale = acc.index_select(0, idx).sqrt_().add_(eps).reciprocal_().mul_(-lr)
    weight.index_add_(0, idx, grad.mul_(scale.unsqueeze(1)))
