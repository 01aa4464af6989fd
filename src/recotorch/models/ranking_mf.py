"""Matrix factorisation for implicit feedback, trained by the shared `Trainer` on sampled negatives.

One module (`DotBias` without a rating range: raw logits), three losses:
- "bpr": -log sigmoid(s(u, i+) - s(u, i-)), averaged over `n_neg` sampled negatives;
- "bce": the course's 0/1 version: sigmoid + cross-entropy, positives labelled 1 and the
  sampled negatives 0;
- "softmax": cross-entropy of the positive against negatives shared by the batch: `n_neg`
  draws from the catalogue, or (`sampler="in_batch"`) the batch's own positives; logits are
  corrected by the log-probability of drawing each item, accidental hits are masked.
`make_model("bpr")` and `make_model("bce")` give the subclasses with the loss fixed (and
defaults tuned for it); `make_model("ranking_mf", loss=...)` the general class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from recotorch.core.device import resolve_device, seeded
from recotorch.core.retrieval import RetrievalVectors
from recotorch.data.interactions import Interactions
from recotorch.data.sampling import NegativeSampler
from recotorch.errors import OptionError
from recotorch.models.base import register
from recotorch.models.gradient import GAINED_FIELDS, LATER_FIELDS, GradientEstimator
from recotorch.models.itemknn import distinct_pairs
from recotorch.models.mf import DotBias
from recotorch.train import ranking_kernel
from recotorch.train.config import OptimizerName, TrainConfig, int_range, log_uniform, param
from recotorch.train.losses import bce_loss, bpr_loss, sampled_softmax_loss
from recotorch.train.ranking_kernel import FusedSampledStep

Loss = Literal["bpr", "bce", "softmax"]
Sampler = Literal["uniform", "popularity", "in_batch"]


@register
class RankingMF(GradientEstimator):
    """Dot product + biases scored as logits, learnt to rank positives above unseen items.

    Negatives are drawn per batch inside `_batch_loss`: uniformly, or in proportion to
    popularity ** 0.75 (`sampler="popularity"`). BPR and BCE draw `n_neg` per positive and never
    one of the user's training items (`NegativeSampler`); softmax shares its draws across the
    batch and masks each user's training items instead; `sampler="in_batch"` (softmax only)
    uses the batch's positives. Draws come from the RNG the `Trainer` seeds from `seed` for
    each epoch, so fits are reproducible and a run resumed from a checkpoint samples exactly
    what an uninterrupted run would (a private generator would not survive the resume).

    Defaults were chosen on a validation split of the ml-100k top-N protocol (test NDCG@10:
    softmax 0.146; BPR 0.135 and BCE 0.143 with their compiled defaults, 0.145 and 0.142 with the
    earlier AdamW ones in 40 epochs of the tensor path; EASE and ALS reach ~0.159 there).

    The loss "softmax" stays on the tensor path: its step is two matrix products against the shared
    negatives (BLAS already), which a per-row compiled kernel would not beat.

    >>> RankingMF(loss="softmax", n_neg=64).fit(positives).recommend([196], k=10)
    """

    name = "ranking_mf"
    task = "ranking"
    CAPABILITIES = frozenset({"retrieval_vectors", "similar_items", "item_vectors", "user_vectors"})
    TEST_PARAMS: ClassVar[dict[str, Any]] = {"dim": 4, "epochs": 2, "n_neg": 4}
    LATER_PARAMS: ClassVar[dict[str, Any]] = LATER_FIELDS | GAINED_FIELDS

    @dataclass
    class Config(TrainConfig):
        loss: Loss = param("softmax", help="bpr, bce or softmax (sampled, logQ-corrected)")  # noqa: RUF009 (alias)
        dim: int = param(64, ge=1, help="factors per user and item", tune=int_range(8, 256, log=True))
        n_neg: int = param(128, ge=1, help="sampled negatives per positive (bpr, bce) or per batch (softmax)",
                           tune=int_range(1, 512, log=True))
        sampler: Sampler = param("popularity", help="uniform, popularity (** 0.75) or in_batch (softmax only)")  # noqa: RUF009
        init_std: float = param(0.1, gt=0, help="std of the initial factors", tune=log_uniform(1e-3, 0.3))
        epochs: int = 20
        batch_size: int = 2048
        lr: float = 2e-2
        weight_decay: float = 1.0

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.sampler == "in_batch" and self.loss != "softmax":
                raise OptionError("sampler", "'in_batch' needs loss='softmax'")

    # ---- training -----------------------------------------------------------------------
    def prepare_fit(self) -> None:
        if self.uses_kernel():
            ranking_kernel.warm_up_async()  # Numba's start-up overlaps with reading the data, not with the fit

    def _prepare(self, train: Interactions) -> None:
        dev = resolve_device(self.device)
        popularity = torch.bincount(train.item_idx, minlength=train.n_items).float()
        weights = popularity**0.75 if self.sampler == "popularity" else None
        self._train_seen, self._train_items = train.to_csr(), train.n_items  # also set when called by find_lr
        self._negatives = NegativeSampler(train.n_items, self._train_seen, weights, device=dev)
        q = {"uniform": torch.ones_like(popularity), "popularity": weights, "in_batch": popularity}[self.sampler]
        self._log_q = torch.log(q / q.sum()).clamp(min=-30.0).to(dev)  # log-probability of drawing each item

    def _build_module(self, n_users: int, n_items: int) -> DotBias:
        return DotBias(n_users, n_items, self.dim, None, self.init_std, sparse=self.sparse_gradients)

    def _fused_step(self) -> FusedSampledStep | None:
        """The compiled BPR / BCE step (`train.ranking_kernel`) where it computes what `_batch_loss` and the
        optimiser would: row-wise Adagrad on CPU with Numba installed; otherwise None (the tensor path)."""
        if not self.uses_kernel():
            return None
        m, sampler = self.module_, self._negatives
        indptr = torch.cat([sampler.starts, torch.tensor([sampler.keys.numel()])]).cpu()
        step = FusedSampledStep(m.user_factors.weight, m.item_factors.weight, m.user_bias.weight, m.item_bias.weight,
                                self.loss, self.n_neg, indptr, (sampler.keys % self._train_items).cpu(),
                                None if sampler.weights is None else sampler.weights.cpu())
        step.prepare()
        return step

    def uses_kernel(self) -> bool:
        """Whether `fit` takes the compiled step: loss bpr or bce, optimizer rowwise_adagrad, a CPU device,
        Numba installed (and, in the Trainer, no amp, no gradient accumulation, one process)."""
        return (self.loss in ranking_kernel.LOSSES and self.optimizer == "rowwise_adagrad"
                and ranking_kernel.available() and resolve_device(self.device).type == "cpu")

    def _training_tensors(self, train: Interactions) -> dict[str, torch.Tensor]:
        users, items = distinct_pairs(train)
        return {"user_idx": users, "item_idx": items}

    def _batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        users, items = batch["user_idx"], batch["item_idx"]
        if self.loss == "softmax":
            return self._softmax_loss(users, items)
        m = self.module_
        neg_items = self._negatives.sample(users, self.n_neg)  # (B, n_neg), global RNG seeded by the Trainer
        candidates = torch.cat([items.unsqueeze(1), neg_items], dim=1)  # (B, 1 + n_neg)
        user_vec = m.user_factors(users).unsqueeze(-1)  # (B, d, 1): gathered once, not per negative
        logits = torch.bmm(m.item_factors(candidates), user_vec).squeeze(-1)
        logits = logits + m.item_bias(candidates).squeeze(-1)  # (B, 1 + n_neg)
        if self.loss == "bpr":  # b_u cancels in every difference: left out, so that no rounding noise moves it
            return bpr_loss(logits[:, 0], logits[:, 1:])
        logits = logits + m.user_bias(users)
        target = torch.zeros_like(logits)
        target[:, 0] = 1.0
        return bce_loss(logits.flatten(), target.flatten())  # positives 1, negatives 0

    def _softmax_loss(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Sampled softmax over negatives shared by the batch, accidental hits masked, log q corrected.

        The candidates are `n_neg` draws from the sampler (or the batch's own positives with
        `sampler="in_batch"`); every logit is corrected by the log-probability of drawing its
        item, and a candidate the user has interacted with (including the positive itself) is
        masked from that user's negatives. Memory: a (B, n_items) bool mask per step.
        """
        m = self.module_
        shared = items if self.sampler == "in_batch" else self._negatives.draw((self.n_neg,))  # (C,)
        user_vec = m.user_factors(users)  # (B, d)
        positive = (user_vec * m.item_factors(items)).sum(-1) + m.item_bias(items).squeeze(-1)  # (B,)
        negative = user_vec @ m.item_factors(shared).T + m.item_bias(shared).T  # (B, C)
        if self.sampler != "uniform":  # uniform draws have a constant log q, which cancels
            positive = positive - self._log_q[items]
            negative = negative - self._log_q[shared][None, :]
        negative = negative.masked_fill(self._seen_rows(users)[:, shared], -torch.inf)
        return sampled_softmax_loss(positive, negative)

    def _seen_rows(self, users: torch.Tensor) -> torch.Tensor:
        """(B, n_items) bool: the users' training items."""
        which, pos = self._train_seen.entries(users)
        mask = torch.zeros(users.numel(), self._train_items, dtype=torch.bool, device=users.device)
        mask[which.to(users.device), self._train_seen.indices[pos].to(users.device)] = True
        return mask

    def _valid_loss(self, valid: Interactions) -> float:
        """The training loss on the validation positives, with negatives drawn under a fixed seed."""
        dev = self.module_device
        users, items = distinct_pairs(valid)
        total, count = 0.0, 0
        with seeded(self.seed, dev):
            for start in range(0, users.numel(), self.batch_size):
                u, i = users[start : start + self.batch_size].to(dev), items[start : start + self.batch_size].to(dev)
                total += float(self._batch_loss({"user_idx": u, "item_idx": i})) * u.numel()
                count += u.numel()
        return total / max(count, 1)

    # ---- answering ----------------------------------------------------------------------
    def item_vectors(self) -> torch.Tensor:
        return self.module_.item_factors.weight.detach().cpu()

    def user_vectors(self) -> torch.Tensor:
        return self.module_.user_factors.weight.detach().cpu()

    def retrieval_vectors(self) -> RetrievalVectors:
        return self.module_.retrieval_vectors()


@register
class BPRMF(RankingMF):
    """Bayesian personalised ranking (Rendle et al., 2009) on `DotBias`: `RankingMF(loss="bpr")`.

    The defaults train with row-wise Adagrad, which on CPU with Numba installed runs the compiled
    step of `recotorch.train.ranking_kernel` (negatives drawn inside the kernel); `optimizer="adamw"`
    (or "sparse_adam"), `amp`, `grad_accum > 1`, a GPU or a machine without Numba take the tensor
    path of the `Trainer` (same loss; with row-wise Adagrad the same update). Defaults chosen on a
    validation split carved from the training part of the ml-100k top-N protocol (validation NDCG@10
    0.143, the earlier AdamW defaults' 0.138 in 40 epochs of the tensor path).
    """

    name = "bpr"
    TEST_PARAMS: ClassVar[dict[str, Any]] = {"dim": 4, "epochs": 2}

    loss = "bpr"

    @dataclass
    class Config(TrainConfig):
        dim: int = param(64, ge=1, help="factors per user and item", tune=int_range(8, 256, log=True))
        n_neg: int = param(4, ge=1, help="sampled negatives per positive", tune=int_range(1, 64, log=True))
        sampler: Literal["uniform", "popularity"] = param("uniform", help="uniform or popularity (** 0.75)")
        init_std: float = param(0.1, gt=0, help="std of the initial factors", tune=log_uniform(1e-3, 0.3))
        optimizer: OptimizerName = "rowwise_adagrad"
        epochs: int = 20
        batch_size: int = 4096
        lr: float = param(0.3, gt=0, help="peak learning rate (the top of the one-cycle schedule)",
                          tune=log_uniform(1e-2, 1.0))  # row-wise Adagrad's scale, not AdamW's
        weight_decay: float = 0.04


@register
class BCEMF(RankingMF):
    """The course's implicit MF: sigmoid + binary cross-entropy, positives 1, sampled negatives 0."""

    name = "bce"
    TEST_PARAMS: ClassVar[dict[str, Any]] = {"dim": 4, "epochs": 2}

    loss = "bce"

    @dataclass
    class Config(BPRMF.Config):
        """The same options as BPR; only the loss and the weight decay's default differ."""

        weight_decay: float = 0.02
