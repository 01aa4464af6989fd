"""Implicit ALS's conjugate-gradient row solves: one compiled CPU kernel (Numba) and the same maths in tensors.

Every row u (a user, or an item on the other half-step) solves
    A_u x = b_u,  A_u = Y^T Y + reg I + sum_{i in u} c_ui y_i y_i^T,  b_u = sum_{i in u} (1 + c_ui) y_i
with c_ui = alpha x (scaled weight), by `steps` conjugate-gradient steps warm-started from the
current factors (Takacs et al., 2011). Each step splits A_u p into
- the dense part P @ (Y^T Y + reg I) for all rows at once: one BLAS matrix product, and
- the sparse part sum_i c_ui (y_i . p_u) y_i, which reads each row's items once from the CSR slice.

On CPU with Numba, the sparse part and the whole CG update (step length, x, residual, direction)
are one fused parallel pass over rows (prange: rows are independent, so no atomics and no
dependence on the thread count). Without Numba, or on a GPU, `torch_cg` runs the same steps as
tensor operations (a sparse product per step), batched over all rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recotorch.train.mf_kernel import available
from recotorch.train.once import Once

TINY = 1e-20  # floor of CG denominators (a converged row keeps its x)


def supports(*tensors: torch.Tensor) -> bool:
    """Whether the compiled solve can run on these tensors (float32 on CPU, Numba installed)."""
    return available() and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def _load_kernels() -> tuple[Any, Any]:
    """The two compiled kernels (from Numba's disk cache after the first run), called once on empty
    inputs so that later calls find machine code ready."""
    start, step = _compile()
    ptr, none = np.zeros(1, np.int64), np.zeros(0, np.int64)
    mat, vec = np.zeros((0, 1), np.float32), np.zeros(0, np.float32)
    start(ptr, none, vec, mat, mat, mat, mat, vec)
    step(ptr, none, vec, mat, mat, mat, mat, mat, vec, TINY)
    return start, step


_KERNELS: Once[tuple[Any, Any]] = Once(_load_kernels, "recotorch-als-kernels")


def _kernels() -> tuple[Any, Any]:
    return _KERNELS.get()


def warm_up_async() -> None:
    """Load the kernels on a daemon thread (about half a second of Numba start-up, once per process),
    so it overlaps with whatever runs before the fit, such as reading the data; a no-op without Numba."""
    _KERNELS.start(only_if=available)


def _compile() -> tuple[Any, Any]:
    from numba import njit, prange

    @njit(parallel=True, fastmath=True, cache=True)
    def start(indptr, indices, conf, Y, X, R, P, rs):  # pragma: no cover - compiled
        """On entry R = X @ A0; leaves R = b - A X, P = R and rs = |R|^2 per row."""
        n, d = X.shape
        one = np.float32(1.0)
        for u in prange(n):
            for k in range(d):
                R[u, k] = -R[u, k]
            for j in range(indptr[u], indptr[u + 1]):
                i, c = indices[j], conf[j]
                yx = np.float32(0.0)
                for k in range(d):
                    yx += Y[i, k] * X[u, k]
                coef = one + c - c * yx
                for k in range(d):
                    R[u, k] += coef * Y[i, k]
            s = np.float32(0.0)
            for k in range(d):
                P[u, k] = R[u, k]
                s += R[u, k] * R[u, k]
            rs[u] = s

    @njit(parallel=True, fastmath=True, cache=True)
    def step(indptr, indices, conf, Y, X, R, P, AP, rs, tiny):  # pragma: no cover - compiled
        """On entry AP = P @ A0; adds the sparse part of A P and applies one CG step to every row."""
        n, d = X.shape
        for u in prange(n):
            for j in range(indptr[u], indptr[u + 1]):
                i = indices[j]
                yp = np.float32(0.0)
                for k in range(d):
                    yp += Y[i, k] * P[u, k]
                w = conf[j] * yp
                for k in range(d):
                    AP[u, k] += w * Y[i, k]
            pap = np.float32(0.0)
            for k in range(d):
                pap += P[u, k] * AP[u, k]
            a = rs[u] / max(pap, tiny)
            rn = np.float32(0.0)
            for k in range(d):
                X[u, k] += a * P[u, k]
                R[u, k] -= a * AP[u, k]
                rn += R[u, k] * R[u, k]
            beta = rn / max(rs[u], tiny)
            for k in range(d):
                P[u, k] = R[u, k] + beta * P[u, k]
            rs[u] = rn

    return start, step


def _gram(other: torch.Tensor, reg: float) -> torch.Tensor:
    """Y^T Y + reg I: the part of every row's system that does not depend on the row."""
    a0 = other.T @ other
    a0.diagonal().add_(reg)
    return a0


def numba_cg(indptr: torch.Tensor, indices: torch.Tensor, conf: torch.Tensor, other: torch.Tensor,
             current: torch.Tensor, reg: float, steps: int) -> torch.Tensor:
    """`steps` CG steps for every row of the CSR (indptr, indices, conf = alpha x weight); returns new factors.

    other (n_other, d) is Y, current (n_rows, d) the warm start (not modified); float32 on CPU.
    """
    import numba

    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    start, step = _kernels()
    a0 = _gram(other, reg)
    x = current.clone().contiguous()
    r = x @ a0
    p, ap, rs = torch.empty_like(x), torch.empty_like(x), torch.empty(x.shape[0])
    ptr, idx, c, y = indptr.numpy(), indices.numpy(), conf.contiguous().numpy(), other.contiguous().numpy()
    xn, rn, pn, apn, rsn = x.numpy(), r.numpy(), p.numpy(), ap.numpy(), rs.numpy()
    start(ptr, idx, c, y, xn, rn, pn, rsn)
    for _ in range(steps):
        torch.mm(p, a0, out=ap)
        step(ptr, idx, c, y, xn, rn, pn, apn, rsn, TINY)
    return x


def torch_cg(indptr: torch.Tensor, indices: torch.Tensor, conf: torch.Tensor, other: torch.Tensor,
             current: torch.Tensor, reg: float, steps: int) -> torch.Tensor:
    """The same steps as `numba_cg` in tensor operations on `other`'s device (the GPU path)."""
    dev = other.device
    indptr, indices, conf = indptr.to(dev), indices.to(dev), conf.to(dev)
    n_rows, n_other = current.shape[0], other.shape[0]
    row_of = torch.repeat_interleave(torch.arange(n_rows, device=dev), indptr[1:] - indptr[:-1])
    y = other.index_select(0, indices)  # (nnz, d), read once per solve

    coords = torch.stack([row_of, indices])  # CSR order: sorted and distinct

    def csr(values: torch.Tensor) -> torch.Tensor:
        return torch.sparse_coo_tensor(coords, values, (n_rows, n_other), is_coalesced=True,
                                       check_invariants=False)

    def sparse_part(v: torch.Tensor) -> torch.Tensor:  # sum_i c_ui (y_i . v_u) y_i
        return csr(conf * torch.einsum("nd,nd->n", y, v.index_select(0, row_of))) @ other

    a0 = _gram(other, reg)
    x = current.clone()
    res = csr(conf + 1.0) @ other - x @ a0 - sparse_part(x)
    p = res.clone()
    rs = (res * res).sum(1, keepdim=True)
    for _ in range(steps):
        ap = p @ a0 + sparse_part(p)
        a = rs / (p * ap).sum(1, keepdim=True).clamp(min=TINY)
        x += a * p
        res -= a * ap
        rs_new = (res * res).sum(1, keepdim=True)
        p = res + rs_new / rs.clamp(min=TINY) * p
        rs = rs_new
    return x


def cg_solve(indptr: torch.Tensor, indices: torch.Tensor, conf: torch.Tensor, other: torch.Tensor,
             current: torch.Tensor, reg: float, steps: int, compiled: bool = True) -> torch.Tensor:
    """The compiled kernel where it can run (`compiled` and `supports`), else the tensor path."""
    if compiled and supports(other, current, conf):
        return numba_cg(indptr, indices, conf, other, current, reg, steps)
    return torch_cg(indptr, indices, conf, other, current, reg, steps)
