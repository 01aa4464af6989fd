"""EASE (Steck, 2019): a closed-form linear item-item model, strong and fast on small catalogues."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from recotorch.data.interactions import Interactions, build_csr
from recotorch.errors import UnsupportedError
from recotorch.models.base import register
from recotorch.models.itemknn import (
    BLOCK_CELLS,
    LINKS_HELP,
    OWN_HELP,
    ItemItemModel,
    LinksFrom,
    RecencyConfig,
    coo,
    gram_blocks,
)
from recotorch.train.config import log_uniform, param

# Fitting's memory beyond the n x n matrix: gram_blocks' dense blocks (~3 x 2**24 floats) and slack.
FIT_OVERHEAD_BYTES = 3 * BLOCK_CELLS * 4 + 2**27


def available_bytes(device: torch.device) -> int | None:
    """Free memory where the matrix will live: the GPU's free memory, else Linux's MemAvailable (None: unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(n_items: int, dtype: torch.dtype, device: torch.device, n_users: int | None = None) -> None:
    """Refuse, before allocating, a catalogue whose n x n matrices do not fit the free memory.

    With fewer users than items (the Woodbury route): one n x n matrix plus three users x items
    ones. Otherwise one n x n matrix with SciPy's LAPACK on CPU (inverted in place), two without
    (torch's Cholesky and inverse each make one temporary copy).
    """
    size = torch.empty((), dtype=dtype).element_size()
    wide = n_users is not None and n_users < n_items
    matrices = 1 if wide or (device.type == "cpu" and _has_lapack()) else 2
    need = (matrices * n_items * n_items + (3 * n_users * n_items if wide else 0)) * size + FIT_OVERHEAD_BYTES
    free = available_bytes(device)
    kind = str(dtype).removeprefix("torch.")
    if free is not None and need > free:
        raise UnsupportedError(
            f"EASE on {n_items:,} items needs about {need / 1e9:.1f} GB ({matrices} x {n_items:,}^2 {kind}) but "
            f"{free / 1e9:.1f} GB is free on {device}: use --model als, or drop rare items to shrink the catalogue")


def spd_inverse_(a: torch.Tensor, *, lapack: bool = True) -> torch.Tensor:
    """The inverse of the symmetric positive definite `a`, computed in a's own memory where possible.

    CPU with SciPy: LAPACK potrf + potri on a's buffer (a C-ordered symmetric matrix is its own
    Fortran-ordered transpose, so no copy is made), then the triangle mirrored in row blocks.
    Elsewhere (GPU, or no SciPy): torch's Cholesky and cholesky_inverse writing into `a`.
    """
    if lapack and _has_lapack() and a.device.type == "cpu" and a.is_contiguous() and a.dtype in (
            torch.float32, torch.float64):
        from scipy.linalg import lapack as lp

        f32 = a.dtype == torch.float32
        potrf, potri = (lp.spotrf, lp.spotri) if f32 else (lp.dpotrf, lp.dpotri)
        arr = a.numpy().T  # Fortran-ordered view of the same memory
        chol, info = potrf(arr, lower=1, overwrite_a=1, clean=0)
        if info == 0:
            inv, info = potri(chol, lower=1, overwrite_c=1)
        if info != 0:
            raise ValueError(f"the regularised Gram matrix is not positive definite (LAPACK info {info})")
        out = a if np.shares_memory(inv, arr) else torch.from_numpy(np.ascontiguousarray(inv.T))
        _mirror_upper_(out)  # Fortran lower triangle = C upper triangle
        return out
    torch.linalg.cholesky(a, out=a)  # each makes one temporary n x n copy, then writes into a
    return torch.cholesky_inverse(a, out=a)


def _has_lapack() -> bool:
    try:
        from scipy.linalg import lapack  # noqa: F401
    except ImportError:
        return False
    return True


def _precision_by_users(users: torch.Tensor, items: torch.Tensor, values: torch.Tensor, n_users: int, n_items: int,
                        reg: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """reg x (X^T X + reg I)^-1 = I - X^T (X X^T + reg I)^-1 X (Woodbury), for X with fewer users than items.

    X (n_users, n_items) has `values` at (users, items), distinct pairs sorted by user then item.

    The same P up to the factor 1 / reg, which B = -P / diag(P) does not see; the inverse is of the
    users x users matrix (u^3), and the one n x n product X^T M is sparse x dense (nnz x n_items),
    instead of the n^3 of inverting the items x items Gram matrix.
    """
    coords, vals = torch.stack([users, items]).to(device), values.to(device=device, dtype=dtype)
    x = coo(coords, vals, (n_users, n_items), True)
    k = torch.sparse.mm(x, x.to_dense().T).double()  # X X^T + reg I, inverted in float64 (u x u: cheap)
    k.diagonal().add_(reg)
    k_inv = torch.cholesky_inverse(torch.linalg.cholesky(k)).to(dtype)
    by_item = build_csr(items, users, n_items, values)  # X^T's rows
    row_of = torch.repeat_interleave(torch.arange(n_items), by_item.row_lengths()).to(device)
    cols, xt_vals = by_item.indices.to(device), by_item.values.to(device=device, dtype=dtype)  # type: ignore[union-attr]
    xt = coo(torch.stack([row_of, cols]), xt_vals, (n_items, n_users), True)
    m = torch.sparse.mm(xt, k_inv).T.contiguous()  # (X^T K^-1)^T = K^-1 X, (u, n_items)
    out = torch.empty(n_items, n_items, dtype=dtype, device=device)  # the one n x n matrix
    step = max(1, BLOCK_CELLS // max(n_items, 1))  # row blocks: torch's sparse x dense makes a temporary result
    for start in range(0, n_items, step):
        end = min(n_items, start + step)
        lo, hi = int(by_item.indptr[start]), int(by_item.indptr[end])
        block = coo(torch.stack([row_of[lo:hi] - start, cols[lo:hi]]), xt_vals[lo:hi], (end - start, n_users), True)
        out[start:end] = torch.sparse.mm(block, m)  # rows of X^T K^-1 X
    out.neg_().diagonal().add_(1.0)
    return out


def _mirror_upper_(a: torch.Tensor, block: int = 1024) -> None:
    """Copy the upper triangle of square `a` onto its lower triangle, in place, `block` rows at a time."""
    n = a.shape[0]
    for start in range(0, n, block):
        end = min(n, start + block)
        a[start:end, :start] = a[:start, start:end].T
        diag = a[start:end, start:end]
        diag.copy_(diag.triu() + diag.triu(1).T)


@register
class EASE(ItemItemModel):
    """Embarrassingly shallow autoencoder: score(u) = x_u @ B with x_u the user's row of confidences.

    B minimises ||X - X B||^2 + lambda ||B||^2 subject to diag(B) = 0, which has the closed form
    P = (X^T X + lambda I)^-1, B = I - P / diag(P) (column-wise), i.e. B_ij = -P_ij / P_jj.
    `reg` is lambda: 100 was best on a validation split of the ml-100k top-N protocol (test
    NDCG@10 0.158; 50-300 all within 0.004). The inverse is taken in float32 (`dtype`; float64
    gave the same NDCG@10 to 4 digits: the ridge keeps X^T X + lambda I well conditioned).

    Recency (`half_life`, see `recotorch.models.itemknn`): x_u weights the user's items by
    0.5 ** (later rows / (half_life x the user's rows)); B is unchanged. On the ml-100k top-N
    protocol (test = each user's latest positives), `EASE(reg=400, half_life=0.2)`, chosen on a
    validation split carved from the training part (last 20% of each user's train positives;
    reg 200-500 x half_life 0.2-0.3 all gave 0.180-0.184 there, 0.149 without recency), lifts
    test NDCG@10 from 0.158 to 0.173. Fitting needs timestamps; the default (None) does not.

    Weights (`--weights`): B is learnt from which items each user has (`links_from="binary"`) and
    x_u carries the confidences. B learnt from repeat-purchase counts is dominated by the few
    heavily re-bought pairs (NDCG@10 on new items 0.23x of binary on the synthetic purchase log;
    log1p 0.76x; neither ridge strength 100-1000 nor column or row normalisation recovered it),
    while 0/1 links with a weighted x_u keep 0.99-1.00x. `own_weight` (0.5) mixes the user's own
    confidence into the score of a seen item, so with repeats allowed the items bought most come
    first: next-purchase NDCG@10 0.67 with log1p weights vs 0.23 before (the user's own counts
    alone: 0.67; `benchmarks/results/weights.md`). Neither changes anything on 0/1 data with seen
    items excluded.

    Memory and time: B is dense, n_items^2 floats (11 MB for 1,682 items, 1.6 GB for 20,000).
    With fewer users than items, P comes exactly from the users x users inverse (Woodbury:
    P ~ I - X^T (X X^T + lambda I)^-1 X; time ~ n_users^3 + nnz x n_items), else the Gram matrix is
    inverted in place by LAPACK's potrf/potri through SciPy (O(n_items^3)); either way fitting
    holds the one n x n matrix (turned into B in place) plus blocks of ~200 MB;
    before fitting, the need is compared with the free memory (RAM, or the GPU's) and a catalogue
    that does not fit is refused (UnsupportedError naming the items and GB; use ALS, or filter
    rare items). Scoring costs nnz(batch rows) x n_items.

    >>> EASE(reg=100).fit(positives).recommend([196], k=10)
    """

    name = "ease"
    TEST_PARAMS: ClassVar[dict[str, Any]] = {"reg": 10.0}

    @dataclass
    class Config(RecencyConfig):
        reg: float = param(100.0, gt=0, help="ridge strength on the item-item weights", tune=log_uniform(1.0, 1e4))
        dtype: Literal["float32", "float64"] = param("float32", help="precision of the solve")
        links_from: LinksFrom = param("binary", help=LINKS_HELP)  # noqa: RUF009 (a type alias)
        # no tune hint: the tuner ranks with seen items excluded, where own_weight changes no ranking
        own_weight: float = param(0.5, ge=0, le=1, help=OWN_HELP)

    def _fit_links(self, train: Interactions, valid: Interactions | None) -> None:
        dtype = getattr(torch, self.dtype)
        dev = self.torch_device
        n_users, n = train.n_users, train.n_items
        check_memory(n, dtype, dev, n_users=n_users)
        users, items, conf = self._weighted_pairs(train)  # X's entries: 1 (links_from="binary") or the confidences
        if n_users < n:
            precision = _precision_by_users(users, items, conf, n_users, n, float(self.reg), dtype, dev)
        else:
            gram = torch.empty(n, n, dtype=dtype, device=dev)  # the only n x n matrix: G, then P, then B
            for start, block in gram_blocks(users, items, conf, n_users, n, dev):
                gram[start : start + block.shape[0]].copy_(block)
                del block
            gram.diagonal().add_(self.reg)
            precision = spd_inverse_(gram)  # P = (X^T X + reg I)^-1, in place
        diag = precision.diagonal().clone()
        precision.div_(diag.neg_()[None, :])  # B_ij = -P_ij / P_jj
        precision.diagonal().zero_()
        self.weights_ = precision if precision.dtype == torch.float32 else precision.float()

    def _propagate(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(rows, self.weights_)

    def score_new_users(self, vectors: torch.Tensor) -> torch.Tensor:
        """x @ W as one dense product (W is dense); no `own_weight` (module docstring of `itemknn`)."""
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
