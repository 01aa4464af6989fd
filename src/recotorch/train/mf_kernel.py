"""The fused MF step as one compiled CPU kernel (Numba), for when tensor operations are the bottleneck.

`FusedDotBiasStep` in tensor operations makes about fifteen passes over (batch, dim) buffers and
runs `index_add_` single-threaded; at 64 factors that caps training near 1-2M samples/s on a
small CPU. This kernel does the same arithmetic in two compiled passes over the batch:

1. per sample (in parallel): score, error, and the gradients of the user and item rows and
   biases, all from the parameters as they were before the step;
2. per table row: each thread owns the rows with `row % threads == t`, adds the squared
   gradients of its rows to the row-wise Adagrad sums, then applies the updates. No two
   threads write the same row, so there are no atomics and no races, and the result does not
   depend on the number of threads.

The update is exactly `FusedDotBiasStep`'s (tests compare the two), so the optimiser state,
checkpoints and learning-rate schedule are shared. Numba is optional (`pip install
recotorch[fast]`); without it, or on a GPU, the tensor path runs. Why not `torch.compile`:
Inductor lowers `index_add_` on CPU to per-element atomic adds, which is slower than this
row-ownership scheme; why not a C++ extension: it would need a compiler on every user's
machine, while Numba ships as a wheel and compiles at first use (a few seconds, then cached).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch


@functools.cache
def available() -> bool:
    """True when Numba is installed, so the compiled step can run on CPU tensors."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _kernel() -> Any:
    from numba import njit, prange

    @njit(parallel=True, fastmath=True, cache=True)
    def step(P, Q, bu, bi, acc_p, acc_q, acc_bu, acc_bi, u, i, target, lr, wd, eps, lo, hi, squash,
             g_p, g_q, g_bu, g_bi, threads):  # pragma: no cover - compiled
        n, dim = u.shape[0], P.shape[1]
        decay = wd / n  # L2 on the touched rows, as RowWiseAdagrad does for sparse gradients
        loss = 0.0
        for s in prange(n):  # 1. gradients from the pre-step parameters
            uu, ii = u[s], i[s]
            raw = bu[uu] + bi[ii]
            for d in range(dim):
                raw += P[uu, d] * Q[ii, d]
            if squash:
                sig = 1.0 / (1.0 + np.exp(-raw))
                err = sig * (hi - lo) + lo - target[s]
                g = err * sig * (1.0 - sig) * (2.0 * (hi - lo) / n)
            else:
                err = raw - target[s]
                g = err * (2.0 / n)
            for d in range(dim):
                g_p[s, d] = Q[ii, d] * g + decay * P[uu, d]
                g_q[s, d] = P[uu, d] * g + decay * Q[ii, d]
            g_bu[s] = g + decay * bu[uu]
            g_bi[s] = g + decay * bi[ii]
            loss += err * err
        for t in prange(threads):  # 2. each thread owns the rows r with r % threads == t
            for s in range(n):
                if u[s] % threads == t:
                    sq = 0.0
                    for d in range(dim):
                        sq += g_p[s, d] * g_p[s, d]
                    acc_p[u[s]] += sq / dim
                    acc_bu[u[s]] += g_bu[s] * g_bu[s]
                if i[s] % threads == t:
                    sq = 0.0
                    for d in range(dim):
                        sq += g_q[s, d] * g_q[s, d]
                    acc_q[i[s]] += sq / dim
                    acc_bi[i[s]] += g_bi[s] * g_bi[s]
            for s in range(n):  # every sum of the step is complete before any row moves
                if u[s] % threads == t:
                    scale = -lr / (np.sqrt(acc_p[u[s]]) + eps)
                    for d in range(dim):
                        P[u[s], d] += scale * g_p[s, d]
                    bu[u[s]] += -lr / (np.sqrt(acc_bu[u[s]]) + eps) * g_bu[s]
                if i[s] % threads == t:
                    scale = -lr / (np.sqrt(acc_q[i[s]]) + eps)
                    for d in range(dim):
                        Q[i[s], d] += scale * g_q[s, d]
                    bi[i[s]] += -lr / (np.sqrt(acc_bi[i[s]]) + eps) * g_bi[s]
        return loss / n

    return step


def supports(*tensors: torch.Tensor) -> bool:
    """Whether the compiled step can work on these tensors in place (contiguous float32 on CPU)."""
    return available() and all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous()
                               for t in tensors)


def dot_bias_adagrad_step(params: tuple[torch.Tensor, ...], sums: tuple[torch.Tensor, ...], u: torch.Tensor,
                          i: torch.Tensor, target: torch.Tensor, lr: float, weight_decay: float, eps: float,
                          rating_range: tuple[float, float] | None, work: tuple[torch.Tensor, ...]) -> float:
    """One row-wise Adagrad step of squash(<p_u, q_i> + b_u + b_i) under MSE, in place; returns the loss.

    params: (P, Q, b_u, b_i) with P, Q (n, dim) and biases of n entries; sums: their row-wise
    Adagrad sums, one entry per row; work: two (>= batch, dim) and two (>= batch,) float32 buffers.
    """
    import numba

    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    n = u.numel()
    P, Q = (p.detach().numpy() for p in params[:2])
    bu, bi = (p.detach().view(-1).numpy() for p in params[2:])
    lo, hi = rating_range or (0.0, 1.0)
    f32 = np.float32
    return float(_kernel()(P, Q, bu, bi, *(s.numpy() for s in sums), u.numpy(), i.numpy(),
                           target.float().numpy(), f32(lr), f32(weight_decay), f32(eps), f32(lo), f32(hi),
                           rating_range is not None, *(w[:n].numpy() for w in work), threads))
