"""Sampled-loss matrix factorisation (BPR, BCE) as compiled CPU kernels (Numba), like `mf_kernel` for MSE.

The tensor path of `RankingMF` (negatives from `NegativeSampler`, autograd through `DotBias` with
sparse gradients, `RowWiseAdagrad`) makes a dozen passes over (batch, 1 + n_neg, dim) buffers per
step plus the sampler's searches and the optimiser's `index_add_`s. Here one step is three
compiled passes over the batch:

1. `draw`: `n_neg` negatives per positive from a counter-based hash of (seed, sample, draw), so
   the draws do not depend on the number of threads; each draw is checked against the user's
   training items (one bit of a (user, item) bit set when it is at most `SEEN_BITS_BYTES`, ten
   times faster on ml-100k than the binary search of the user's sorted items used above that
   size) and redrawn when it hits one (a few rounds, then the
   exact draw from the user's complement, as `NegativeSampler` does). Uniform, or by a
   cumulative weight table (popularity ** 0.75);
2. per positive (in parallel): the logits of the positive and its negatives and every gradient,
   from the parameters as they were before the step;
3. per table row: each thread owns the rows with `row % threads == t`, adds the mean squared
   gradients to the row-wise Adagrad sums, then applies the updates (no atomics, no races).

Given the same negatives, the update is exactly `RowWiseAdagrad` applied to the autograd
gradients of `RankingMF._batch_loss` on `DotBias(sparse=True)` (tests compare the two), so the
optimiser state, checkpoints and the learning-rate schedule are the Trainer's. The draws come
from a different random stream than `NegativeSampler`'s, with the same distribution. The seed of
each step is drawn from torch's global RNG, which the Trainer seeds per epoch, so fits are
reproducible and resume exactly.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch import nn

from recotorch.train import mf_kernel
from recotorch.train.once import Once
from recotorch.train.optimizers import RowWiseAdagrad

LOSSES = ("bpr", "bce")  # losses the kernel computes; sampled softmax stays on the tensor path
MAX_ROUNDS = 8  # rejection rounds before the exact draw from the user's unseen items
SEEN_BITS_BYTES = 16 << 20  # largest (user, item) bit set the draws use; above it, a search per draw
_NO_BITS = np.zeros(0, np.uint8)


def available() -> bool:
    """True when Numba is installed (the kernels run on CPU tensors)."""
    return mf_kernel.available()


def _run_once_on_scratch() -> bool:
    """Load both kernels (from Numba's disk cache after the first run) and run each once on scratch inputs."""
    tables = (torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, 1), torch.zeros(2, 1))
    sums = tuple(torch.zeros(2) for _ in range(4))
    zero = torch.zeros(1, dtype=torch.int64)
    indptr, indices = torch.tensor([0, 1, 1]), torch.zeros(1, dtype=torch.int64)
    neg = draw_negatives(zero, zero, 1, 0, indptr, indices, 2, torch.tensor([1.0, 2.0], dtype=torch.float64))
    for loss in LOSSES:
        sampled_adagrad_step(tables, sums, zero, zero, zero, neg, loss, 0.1, 0.0, 1e-10,
                             (torch.empty(1, 2), torch.empty(2, 2), torch.empty(1, 2)))
    return True


_WARM: Once[bool] = Once(_run_once_on_scratch, "recotorch-ranking-kernels")


def warm_up() -> None:
    """Have both kernels loaded and run once, so no step pays for it; waits for `warm_up_async`'s thread."""
    _WARM.get()


def warm_up_async() -> None:
    """`warm_up` on a daemon thread (about half a second of Numba start-up), so that it overlaps with what
    runs before the fit, such as reading the data; a no-op without Numba or when done or under way."""
    _WARM.start(only_if=available)


@functools.cache
def _kernels() -> tuple[Any, Any]:
    from numba import njit, prange

    @njit(parallel=True, cache=True)
    def draw(users, rows, seed, indptr, indices, cdf, n_items, rounds, out, bits):  # pragma: no cover - compiled
        # no helper functions: a kernel calling other jitted closures is not cached by Numba
        n, n_neg = out.shape
        has_bits = bits.shape[0] > 0
        golden = np.uint64(0x9E3779B97F4A7C15)
        m1, m2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
        s30, s27, s31 = np.uint64(30), np.uint64(27), np.uint64(31)
        base = np.uint64(seed)
        weighted = cdf.shape[0] > 0
        scale = 1.0 / 18446744073709551616.0  # 2 ** -64
        for s in prange(n):
            u = users[rows[s]]
            lo, hi = indptr[u], indptr[u + 1]
            for j in range(n_neg):
                key = base + np.uint64(s * n_neg + j) * golden
                item = np.int64(-1)
                for r in range(rounds + 1):
                    x = key + np.uint64(r + 1) * golden  # splitmix64's finaliser of a per-draw counter
                    x = (x ^ (x >> s30)) * m1
                    x = (x ^ (x >> s27)) * m2
                    x = x ^ (x >> s31)
                    if r == rounds:  # the user has seen most of the catalogue: the k-th unseen item, uniformly
                        item = np.int64(x % np.uint64(n_items - (hi - lo)))
                        for k in range(lo, hi):
                            if indices[k] <= item:
                                item += 1
                            else:
                                break
                        break
                    if weighted:
                        target = float(x) * scale * cdf[-1]
                        a, b = 0, cdf.shape[0] - 1
                        while a < b:
                            mid = (a + b) >> 1
                            if cdf[mid] <= target:
                                a = mid + 1
                            else:
                                b = mid
                        cand = np.int64(a)
                    else:
                        cand = np.int64(x % np.uint64(n_items))
                    if has_bits:  # the (user, item) bit of the seen set: one load instead of a search
                        cell = u * n_items + cand
                        if (bits[cell >> 3] >> (cell & 7)) & 1 == 0:
                            item = cand
                            break
                        continue
                    a, b = lo, hi  # binary search of cand in the user's sorted items
                    while a < b:
                        mid = (a + b) >> 1
                        if indices[mid] < cand:
                            a = mid + 1
                        else:
                            b = mid
                    if a >= hi or indices[a] != cand:
                        item = cand
                        break
                out[s, j] = item

    @njit(parallel=True, fastmath=True, cache=True)
    def step(P, Q, bu, bi, acc_p, acc_q, acc_bu, acc_bi, users, items, rows, neg, bce, lr, wd, eps,
             g_p, g_q, glogs, threads):  # pragma: no cover - compiled
        n, n_neg = neg.shape
        width = n_neg + 1
        m, dim = n * width, P.shape[1]
        one = np.float32(1.0)
        decay_u, decay_i = np.float32(wd / n), np.float32(wd / m)  # L2 per occurrence, as RowWiseAdagrad
        u = np.empty(n, np.int64)
        it = np.empty(m, np.int64)  # the item of each (sample, candidate) entry: positive first
        g_bu, g_bi = np.empty(n, np.float32), np.empty(m, np.float32)
        sq_p, sq_q = np.empty(n, np.float32), np.empty(m, np.float32)
        losses = np.zeros(n, np.float64)
        for s in prange(n):  # 1. logits and gradients from the pre-step parameters
            uu = users[rows[s]]
            u[s] = uu
            it[s * width] = items[rows[s]]
            for j in range(n_neg):
                it[s * width + 1 + j] = neg[s, j]
            glog = glogs[s]  # d loss / d logit of each candidate
            pos = bi[it[s * width]]
            for d in range(dim):
                pos += P[uu, d] * Q[it[s * width], d]
            loss = 0.0
            if bce:
                pos += bu[uu]
                e = np.exp(-abs(pos))  # stable sigmoid and log(1 + exp(.))
                sig = one / (one + e) if pos >= 0 else e / (one + e)
                glog[0] = (sig - one) / m
                loss += np.log1p(e) + max(-pos, 0.0)
            else:
                glog[0] = 0.0
            for j in range(n_neg):
                ii = it[s * width + 1 + j]
                x = bi[ii]
                for d in range(dim):
                    x += P[uu, d] * Q[ii, d]
                if bce:
                    x += bu[uu]
                    e = np.exp(-abs(x))
                    sig = one / (one + e) if x >= 0 else e / (one + e)
                    glog[1 + j] = sig / m
                    loss += np.log1p(e) + max(x, 0.0)
                else:  # -log sigmoid(pos - x), averaged over the negatives and the batch
                    diff = pos - x
                    e = np.exp(-abs(diff))
                    sig_neg = e / (one + e) if diff >= 0 else one / (one + e)  # sigmoid(-diff)
                    c = sig_neg / (n * n_neg)
                    glog[0] -= c
                    glog[1 + j] = c
                    loss += (np.log1p(e) + max(-diff, 0.0)) / n_neg
            losses[s] = loss
            total = np.float32(0.0)
            for j in range(width):
                total += glog[j]
            sp = np.float32(0.0)
            for d in range(dim):
                g_p[s, d] = decay_u * P[uu, d]
            for j in range(width):  # candidate-major: each pass reads one contiguous row (SIMD), not a column
                gj, ij = glog[j], it[s * width + j]
                for d in range(dim):
                    g_p[s, d] += gj * Q[ij, d]
            for d in range(dim):
                sp += g_p[s, d] * g_p[s, d]
            sq_p[s] = sp / dim
            g_bu[s] = total + decay_u * bu[uu] if bce else 0.0  # BPR: b_u cancels in every difference
            for j in range(width):
                e_ = s * width + j
                ii = it[e_]
                sq = np.float32(0.0)
                for d in range(dim):
                    gq = glog[j] * P[uu, d] + decay_i * Q[ii, d]
                    g_q[e_, d] = gq
                    sq += gq * gq
                sq_q[e_] = sq / dim
                g_bi[e_] = glog[j] + decay_i * bi[ii]
        for t in prange(threads):  # 2. each thread owns the rows r with r % threads == t
            for s in range(n):
                if u[s] % threads == t:
                    acc_p[u[s]] += sq_p[s]
                    acc_bu[u[s]] += g_bu[s] * g_bu[s]
            for e_ in range(m):
                if it[e_] % threads == t:
                    acc_q[it[e_]] += sq_q[e_]
                    acc_bi[it[e_]] += g_bi[e_] * g_bi[e_]
            for s in range(n):  # every sum of the step is complete before any row moves
                if u[s] % threads == t:
                    scale = -lr / (np.sqrt(acc_p[u[s]]) + eps)
                    for d in range(dim):
                        P[u[s], d] += scale * g_p[s, d]
                    bu[u[s]] += -lr / (np.sqrt(acc_bu[u[s]]) + eps) * g_bu[s]
            for e_ in range(m):
                if it[e_] % threads == t:
                    scale = -lr / (np.sqrt(acc_q[it[e_]]) + eps)
                    for d in range(dim):
                        Q[it[e_], d] += scale * g_q[e_, d]
                    bi[it[e_]] += -lr / (np.sqrt(acc_bi[it[e_]]) + eps) * g_bi[e_]
        total_loss = 0.0
        for s in range(n):
            total_loss += losses[s]
        return total_loss / n if not bce else total_loss / m

    return draw, step


def _threads() -> int:
    import numba

    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    return threads


def seen_bits(indptr: torch.Tensor, indices: torch.Tensor, n_items: int) -> np.ndarray | None:
    """The CSR's (row, item) cells as a bit set (bit row * n_items + item, little-endian within each byte),
    or None when the set would exceed `SEEN_BITS_BYTES`: then `draw_negatives` searches each row instead."""
    n_rows = indptr.numel() - 1
    if n_rows * n_items > 8 * SEEN_BITS_BYTES:
        return None
    counts = (indptr[1:] - indptr[:-1]).numpy()
    cells = np.repeat(np.arange(n_rows, dtype=np.int64), counts) * n_items + indices.numpy()
    bits = np.zeros((n_rows * n_items + 7) // 8, np.uint8)
    np.bitwise_or.at(bits, cells >> 3, np.left_shift(1, cells & 7).astype(np.uint8))
    return bits


def draw_negatives(users: torch.Tensor, rows: torch.Tensor, n_neg: int, seed: int, indptr: torch.Tensor,
                   indices: torch.Tensor, n_items: int, cdf: torch.Tensor | None = None,
                   bits: np.ndarray | None = None) -> torch.Tensor:
    """(len(rows), n_neg) int64 items none of which is in the (distinct, sorted) CSR row of `users[rows]`.

    Uniform over the catalogue, or proportional to the increments of `cdf` (a cumulative float64 weight
    table of n_items entries); the same `seed` gives the same draws on any number of threads. `bits`
    (`seen_bits` of the same CSR) makes each check one load; the draws are the same with or without it.
    """
    _threads()
    out = torch.empty((rows.numel(), n_neg), dtype=torch.int64)
    table = np.empty(0, np.float64) if cdf is None else cdf.numpy()
    _kernels()[0](users.numpy(), rows.numpy(), np.uint64(seed % 2**64), indptr.numpy(), indices.numpy(), table,
                  n_items, MAX_ROUNDS, out.numpy(), _NO_BITS if bits is None else bits)
    return out


def sampled_adagrad_step(params: tuple[torch.Tensor, ...], sums: tuple[torch.Tensor, ...], users: torch.Tensor,
                         items: torch.Tensor, rows: torch.Tensor, negatives: torch.Tensor, loss: str, lr: float,
                         weight_decay: float, eps: float, work: tuple[torch.Tensor, ...]) -> float:
    """One row-wise Adagrad step of BPR or BCE on <p_u, q_i> + b_u + b_i, in place; returns the batch loss.

    params: (P, Q, b_u, b_i), sums: their Adagrad sums; users, items: every training positive; rows: the
    batch's row numbers; negatives: (len(rows), n_neg); work: (>= batch, dim) and (>= batch * (1 + n_neg),
    dim) contiguous float32 buffers, and a third of (>= batch, 1 + n_neg).
    """
    if loss not in LOSSES:
        raise ValueError(f"the compiled step computes {LOSSES}, not {loss!r}")
    threads = _threads()
    P, Q = (p.detach().numpy() for p in params[:2])
    bu, bi = (p.detach().view(-1).numpy() for p in params[2:])
    f32 = np.float32
    return float(_kernels()[1](P, Q, bu, bi, *(s.numpy() for s in sums), users.numpy(), items.numpy(), rows.numpy(),
                               negatives.numpy(), loss == "bce", f32(lr), f32(weight_decay), f32(eps),
                               *(w.numpy() for w in work), threads))


class FusedSampledStep:
    """The Trainer's `fused_step` for BPR / BCE on `DotBias` under row-wise Adagrad: `step(data, rows, opt)`.

    `data` holds "user_idx" and "item_idx" of every training positive; `indptr`, `indices`: each
    user's distinct training items, sorted (the sets negatives must avoid); `weights`: the sampling
    weights of the items (None: uniform). CPU float32 tables only (check with `supports`).
    """

    def __init__(self, user_factors: nn.Parameter, item_factors: nn.Parameter, user_bias: nn.Parameter,
                 item_bias: nn.Parameter, loss: str, n_neg: int, indptr: torch.Tensor, indices: torch.Tensor,
                 weights: torch.Tensor | None = None) -> None:
        if loss not in LOSSES:
            raise ValueError(f"the compiled step computes {LOSSES}, not {loss!r}")
        n_items = item_factors.shape[0]
        if int((indptr[1:] - indptr[:-1]).max()) >= n_items:
            raise ValueError("a user has interacted with every item: no negative to sample")
        self.params = (user_factors, item_factors, user_bias, item_bias)
        self.loss, self.n_neg, self.n_items = loss, n_neg, n_items
        self.indptr, self.indices = indptr.contiguous(), indices.contiguous()
        self.cdf = None if weights is None else torch.cumsum(weights.double(), 0).contiguous()
        self.bits = seen_bits(self.indptr, self.indices, n_items)
        self._buffers: tuple[torch.Tensor, ...] = ()

    @staticmethod
    def supports(*tensors: torch.Tensor) -> bool:
        """Whether the compiled step can update these tensors in place (contiguous float32 on CPU)."""
        return mf_kernel.supports(*tensors)

    def prepare(self) -> None:
        """Compile the kernels (or load them from Numba's cache) before training, or wait for `warm_up_async`."""
        warm_up()

    def _work(self, n: int) -> tuple[torch.Tensor, ...]:
        """Gradient buffers, reused while batches are no larger than the first."""
        dim, width = self.params[0].shape[1], 1 + self.n_neg
        if not self._buffers or self._buffers[0].shape[0] < n:
            self._buffers = (torch.empty(n, dim), torch.empty(n * width, dim), torch.empty(n, width))
        return self._buffers[0][:n], self._buffers[1][: n * width], self._buffers[2][:n]

    @torch.no_grad()
    def __call__(self, data: dict[str, torch.Tensor], rows: torch.Tensor,
                 optimizer: torch.optim.Optimizer) -> torch.Tensor:
        if not isinstance(optimizer, RowWiseAdagrad):
            raise TypeError("the fused step applies row-wise Adagrad; the trainer's optimizer must be one")
        group = optimizer.param_groups[0]
        state = optimizer.state_sums(group)
        sums = tuple(state[p] for p in self.params)
        users, items = data["user_idx"], data["item_idx"]
        if not self.supports(*self.params, *sums):
            raise ValueError("the compiled ranking step needs contiguous float32 CPU tables")
        seed = int(torch.randint(0, 2**62, (1,)))  # the Trainer seeds the global RNG per epoch
        negatives = draw_negatives(users, rows, self.n_neg, seed, self.indptr, self.indices, self.n_items, self.cdf,
                                   self.bits)
        return torch.tensor(sampled_adagrad_step(self.params, sums, users, items, rows, negatives, self.loss,
                                                 group["lr"], group["weight_decay"], group["eps"],
                                                 self._work(rows.numel())))
