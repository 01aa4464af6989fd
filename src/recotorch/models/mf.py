"""Biased matrix factorisation with a sigmoid onto the rating range: the course's model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from recotorch.core.maths import squash
from recotorch.core.retrieval import RetrievalVectors
from recotorch.data.interactions import Interactions
from recotorch.models.base import NewRows, register
from recotorch.models.gradient import RatingModel
from recotorch.models.priors import FactorFoldIn
from recotorch.train.config import OptimizerName, TrainConfig, int_range, log_uniform, param
from recotorch.train.fast_mf import FusedDotBiasStep
from recotorch.train.ordering import ShuffleName

RatingRange = tuple[float, float] | Literal["auto"] | None
# the defaults: tuned on ml-100k (RMSE ~0.904 in ~0.3 s) and checked on a 20M-row synthetic log (docs/scale.md)
FAST_SETTINGS: dict[str, Any] = {"optimizer": "rowwise_adagrad", "batch_size": 8192, "lr": 0.1,
                                 "weight_decay": 0.1, "epochs": 5, "shuffle": "user_blocks"}
# samples per fit (rows x epochs) from which the compiled step pays for loading Numba (measured on ml-100k)
COMPILE_MIN_SAMPLES = 3_000_000
# the course's recipe (AdamW, one-cycle to 1e-2, decoupled weight decay 0.5): the generic Trainer path, RMSE ~0.907
COURSE_SETTINGS: dict[str, Any] = {"optimizer": "adamw", "batch_size": 1024, "lr": 1e-2, "weight_decay": 0.5,
                                   "epochs": 5, "shuffle": "random"}


class DotBias(nn.Module):
    """score(u, i) = squash(<p_u, q_i> + b_u + b_i).

    Holds only tensors; `forward` scores pairs (B,) and `score_all` scores users against the
    whole catalogue (B, n_items) with one matrix product. `sparse=True` gives row-sparse
    gradients, for the optimisers that update only the rows a batch touches.
    """

    def __init__(self, n_users: int, n_items: int, dim: int,
                 rating_range: tuple[float, float] | None = None, init_std: float = 0.01,
                 sparse: bool = False) -> None:
        super().__init__()
        self.user_factors = nn.Embedding(n_users, dim, sparse=sparse)
        self.item_factors = nn.Embedding(n_items, dim, sparse=sparse)
        self.user_bias = nn.Embedding(n_users, 1, sparse=sparse)
        self.item_bias = nn.Embedding(n_items, 1, sparse=sparse)
        nn.init.normal_(self.user_factors.weight, 0.0, init_std)
        nn.init.normal_(self.item_factors.weight, 0.0, init_std)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.rating_range = rating_range

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        dot = (self.user_factors(user_idx) * self.item_factors(item_idx)).sum(-1)  # (B,)
        raw = dot + self.user_bias(user_idx).squeeze(-1) + self.item_bias(item_idx).squeeze(-1)
        return squash(raw, self.rating_range)

    def score_all(self, user_idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        # the item biases ride in the product (addmm) and the rest is in place, so the only
        # (B, n_items) tensor touched is the result: 3x faster than out-of-place on a CPU, and
        # 2x again when the caller passes the previous chunk's buffer as `out` (no page faults)
        raw = torch.addmm(self.item_bias.weight.T, self.user_factors(user_idx), self.item_factors.weight.T, out=out)
        raw += self.user_bias(user_idx)  # (B, n_items)
        return squash(raw, self.rating_range, inplace=True)

    def retrieval_vectors(self) -> RetrievalVectors:
        """User [p_u, 1] and item [q_i, b_i] vectors, user offsets b_u, and the squash's range."""
        with torch.no_grad():
            p, q = self.user_factors.weight.detach().float().cpu(), self.item_factors.weight.detach().float().cpu()
            b_u = self.user_bias.weight.detach().float().cpu().squeeze(1)
            b_i = self.item_bias.weight.detach().float().cpu()  # (n_items, 1)
            users = torch.cat([p, torch.ones(p.shape[0], 1)], 1).contiguous()
            items = torch.cat([q, b_i], 1).contiguous()
        rating_range = None if self.rating_range is None else tuple(map(float, self.rating_range))
        return RetrievalVectors(users, items, b_u, rating_range)  # type: ignore[arg-type]


@register
class MatrixFactorization(FactorFoldIn, RatingModel):
    """Users and items as `dim`-dimensional vectors plus biases; rating = sigmoid-squashed dot.

    The defaults (`FAST_SETTINGS`: 50 factors, row-wise Adagrad on sparse gradients at lr 0.1,
    batches of 8192 in user-block order, weight decay 0.1, 5 epochs) reach RMSE ~0.904 on a random
    80/20 split of ml-100k; on CPU with Numba installed and at least `COMPILE_MIN_SAMPLES` rows x
    epochs each step is the compiled kernel of `recotorch.train.mf_kernel`, elsewhere (small logs, a
    GPU, no Numba) the same arithmetic in tensor ops (`train.fast_mf`). The course's recipe,
    `MatrixFactorization.course()` (`COURSE_SETTINGS`: AdamW, one-cycle to lr 1e-2, decoupled weight
    decay 0.5, batches of 1024), trains through the generic Trainer path (autograd + optimiser):
    RMSE ~0.907. What switches to the generic path:
    `optimizer="adamw"` or "sparse_adam", `amp=True` (bfloat16 autocast, for GPUs),
    `grad_accum > 1`, and torchrun with more than one process. `rating_range="auto"` maps 1-5 stars
    to (0, 5.5) as in the course.

    >>> model = MatrixFactorization(dim=50).fit(train, valid=test)
    >>> model.predict([196], [242]).values
    >>> course = MatrixFactorization.course().fit(train)
    """

    name = "mf"
    CAPABILITIES = frozenset({"fold_in", "update", "retrieval_vectors", "similar_items", "item_vectors",
                              "user_vectors", "item_biases", "user_biases"})
    TEST_PARAMS: ClassVar[dict[str, Any]] = {"dim": 4, "epochs": 2}

    @dataclass
    class Config(TrainConfig):
        dim: int = param(50, ge=1, help="factors per user and item", tune=int_range(8, 256, log=True))
        rating_range: RatingRange = param(  # noqa: RUF009 (a type alias)
            "auto", help='(lo, hi) the sigmoid maps onto; "auto" from the data (1-5 stars: 0-5.5); None: no squash')
        init_std: float = param(0.01, gt=0, help="standard deviation of the initial factors",
                                tune=log_uniform(1e-3, 0.3))
        optimizer: OptimizerName = "rowwise_adagrad"  # FAST_SETTINGS, the defaults
        batch_size: int = 8192
        lr: float = param(0.1, gt=0, help="peak learning rate (the top of the one-cycle schedule)",
                          tune=log_uniform(1e-3, 1.0))  # row-wise Adagrad's scale and AdamW's
        weight_decay: float = 0.1
        shuffle: ShuffleName = "user_blocks"

    @classmethod
    def fast(cls, **params: Any) -> MatrixFactorization:
        """The fast settings (`FAST_SETTINGS`, the defaults since they won on ml-100k and at scale), whatever a
        subclass's defaults are; any hyper-parameter may be overridden."""
        return cls(**{**FAST_SETTINGS, **params})

    @classmethod
    def course(cls, **params: Any) -> MatrixFactorization:
        """The course's recipe (`COURSE_SETTINGS`: AdamW, one-cycle, batches of 1024) on the generic Trainer
        path; any hyper-parameter may be overridden."""
        return cls(**{**COURSE_SETTINGS, **params})

    def uses_kernel(self) -> bool:
        """Whether `fit` takes the fused step (row-wise Adagrad; compiled on CPU with Numba, else tensor ops)
        rather than autograd + optimiser (in the Trainer also: no amp, no accumulation, one process)."""
        return self.optimizer == "rowwise_adagrad"

    def _build_module(self, n_users: int, n_items: int) -> DotBias:
        return DotBias(n_users, n_items, self.dim, self.rating_range_, self.init_std, sparse=self.sparse_gradients)

    def _prepare(self, train: Interactions) -> None:
        super()._prepare(train)
        self._samples = len(train) * self.epochs

    def _fused_step(self) -> FusedDotBiasStep | None:
        if not self.uses_kernel():
            return None
        m = self.module_
        # loading Numba and its compiled kernel costs ~0.6 s of CPU, more than the tensor step spends on a
        # small log (80k ratings x 5 epochs: ~0.15 s); the same arithmetic either way
        compiled = getattr(self, "_samples", COMPILE_MIN_SAMPLES) >= COMPILE_MIN_SAMPLES
        step = FusedDotBiasStep(m.user_factors.weight, m.item_factors.weight, m.user_bias.weight,
                                m.item_bias.weight, self.rating_range_, compiled=compiled)
        step.prepare()
        return step

    def item_vectors(self) -> torch.Tensor:
        return self.module_.item_factors.weight.detach().cpu()

    def user_vectors(self) -> torch.Tensor:
        return self.module_.user_factors.weight.detach().cpu()

    def item_biases(self) -> torch.Tensor:
        return self.module_.item_bias.weight.detach().cpu().squeeze(1)

    def user_biases(self) -> torch.Tensor:
        return self.module_.user_bias.weight.detach().cpu().squeeze(1)

    def retrieval_vectors(self) -> RetrievalVectors:
        return self.module_.retrieval_vectors()

    def update(self, rows: NewRows, *, reg: float | None = None, epochs: int = 0, lr: float | None = None) -> None:
        """Closed-form solves in logit space (new users, new items, affected users), then an optional
        fine-tune with distillation: see `recotorch.models.mf_update`."""
        from recotorch.models.mf_update import update_factors

        update_factors(self, rows, reg=reg, epochs=epochs, lr=lr)
