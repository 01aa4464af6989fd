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
    def step(P, Q, bu, bi, acc_p, acc_q, acc_bu, acc_bi, users, items, ratings, rows, lr, wd, eps, lo, hi,
             squash, g_p, g_q, threads):  # pragma: no cover - compiled
        n, dim = rows.shape[0], P.shape[1]
        one, two = np.float32(1.0), np.float32(2.0)
        decay = np.float32(wd / n)  # L2 on the touched rows, as RowWiseAdagrad does for sparse gradients
        slope = np.float32(two * (hi - lo) / n) if squash else np.float32(two / n)
        u, i = np.empty(n, np.int64), np.empty(n, np.int64)
        owner_u, owner_i = np.empty(n, np.int64), np.empty(n, np.int64)
        g_bu, g_bi = np.empty(n, np.float32), np.empty(n, np.float32)
        sq_p, sq_q = np.empty(n, np.float32), np.empty(n, np.float32)
        loss = 0.0
        for s in prange(n):  # 1. gradients from the pre-step parameters, and whatever pass 2 needs
            uu, ii = users[rows[s]], items[rows[s]]
            u[s], i[s] = uu, ii
            owner_u[s], owner_i[s] = uu % threads, ii % threads
            raw = bu[uu] + bi[ii]
            for d in range(dim):
                raw += P[uu, d] * Q[ii, d]
            if squash:
                sig = one / (one + np.exp(-raw))
                err = sig * (hi - lo) + lo - ratings[rows[s]]
                g = err * sig * (one - sig) * slope
            else:
                err = raw - ratings[rows[s]]
                g = err * slope
            sp, sq = np.float32(0.0), np.float32(0.0)
            for d in range(dim):
                gp = Q[ii, d] * g + decay * P[uu, d]
                gq = P[uu, d] * g + decay * Q[ii, d]
                g_p[s, d], g_q[s, d] = gp, gq
                sp += gp * gp
                sq += gq * gq
            sq_p[s], sq_q[s] = sp / dim, sq / dim
            g_bu[s] = g + decay * bu[uu]
            g_bi[s] = g + decay * bi[ii]
            loss += err * err
        for t in prange(threads):  # 2. each thread owns the rows r with r % threads == t
            for s in range(n):
                if owner_u[s] == t:
                    acc_p[u[s]] += sq_p[s]
                    acc_bu[u[s]] += g_bu[s] * g_bu[s]
                if owner_i[s] == t:
                    acc_q[i[s]] += sq_q[s]
                    acc_bi[i[s]] += g_bi[s] * g_bi[s]
            for s in range(n):  # every sum of the step is complete before any row moves
                if owner_u[s] == t:
                    scale = -lr / (np.sqrt(acc_p[u[s]]) + eps)
                    for d in range(dim):
                        P[u[s], d] += scale * g_p[s, d]
                    bu[u[s]] += -lr / (np.sqrt(acc_bu[u[s]]) + eps) * g_bu[s]
                if owner_i[s] == t:
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


def warm_up() -> None:
    """Compile the kernel, or load it from Numba's on-disk cache, with a one-row step on scratch tables."""
    tables = (torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 1), torch.zeros(1, 1))
    sums = tuple(torch.zeros(1) for _ in range(4))
    zero = torch.zeros(1, dtype=torch.int64)
    dot_bias_adagrad_step(tables, sums, zero, zero, torch.ones(1), zero, 0.1, 0.0, 1e-10, (0.0, 5.5),
                          (torch.empty(1, 2), torch.empty(1, 2)))


def dot_bias_adagrad_step(params: tuple[torch.Tensor, ...], sums: tuple[torch.Tensor, ...], users: torch.Tensor,
                          items: torch.Tensor, ratings: torch.Tensor, rows: torch.Tensor, lr: float,
                          weight_decay: float, eps: float, rating_range: tuple[float, float] | None,
                          work: tuple[torch.Tensor, torch.Tensor]) -> float:
    """One row-wise Adagrad step of squash(<p_u, q_i> + b_u + b_i) under MSE, in place; returns the loss.

    params: (P, Q, b_u, b_i) with P, Q (n, dim) and biases of n entries; sums: their row-wise
    Adagrad sums, one entry per row; users, items, ratings: every training row; rows: the batch's
    row numbers; work: two (>= batch, dim) contiguous float32 buffers for the gradients.
    """
    import numba

    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    P, Q = (p.detach().numpy() for p in params[:2])
    bu, bi = (p.detach().view(-1).numpy() for p in params[2:])
    lo, hi = rating_range or (0.0, 1.0)
    f32 = np.float32
    return float(_kernel()(P, Q, bu, bi, *(s.numpy() for s in sums), users.numpy(), items.numpy(),
                           ratings.numpy(), rows.numpy(), f32(lr), f32(weight_decay), f32(eps), f32(lo), f32(hi),
                           rating_range is not None, *(w.numpy() for w in work), threads))
