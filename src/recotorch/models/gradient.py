"""Estimators trained by the shared `Trainer`: they build a module and say what a batch costs."""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from recotorch.core.device import seeded, tensor_device
from recotorch.core.maths import auto_range_data_scale, auto_rating_range
from recotorch.data.interactions import Interactions
from recotorch.models.base import Estimator
from recotorch.models.baselines import fit_biases, partial_bias
from recotorch.train.config import TrainConfig
from recotorch.train.losses import mse_loss
from recotorch.train.lr_finder import LRFind, lr_find
from recotorch.train.optimizers import SPARSE_OPTIMIZERS
from recotorch.train.trainer import FusedStep, History, Trainer

TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
# TrainConfig fields every gradient model takes since they became reachable; left out of the checkpoint
# fingerprint at their defaults, so checkpoints written before still resume
LATER_FIELDS = {"grad_accum": 1, "schedule": "one_cycle", "pct_start": 0.25}
# ... and those some models gained when their hyper-parameters became one `Config` over `TrainConfig`
GAINED_FIELDS = {"optimizer": "adamw", "amp": False, "shuffle": "random"}
BASELINE_PASSES = 10  # alternating passes of the bias baseline that answers unknown ids


class GradientEstimator(Estimator):
    """Base for models over an `nn.Module` trained by mini-batch gradient descent."""

    module_: nn.Module
    history_: History
    # parameters left out of the checkpoint fingerprint at their defaults (added after checkpoints were written)
    LATER_PARAMS: ClassVar[dict[str, Any]] = LATER_FIELDS

    # ---- the part each model writes -----------------------------------------------------
    @abstractmethod
    def _build_module(self, n_users: int, n_items: int) -> nn.Module:
        """A freshly initialised module for this many users and items."""

    @abstractmethod
    def _batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Loss of one batch (a dict of tensors sliced from `_training_tensors`)."""

    @abstractmethod
    def _training_tensors(self, train: Interactions) -> dict[str, torch.Tensor]:
        """The equal-length tensors the trainer slices into batches."""

    def _valid_loss(self, valid: Interactions) -> float:
        """The number early stopping watches (lower is better)."""
        raise NotImplementedError

    # ---- shared machinery ---------------------------------------------------------------
    def capabilities(self) -> frozenset[str]:
        """The model's own capabilities plus "train_epochs" (checkpoints, resume, `find_lr`)."""
        return super().capabilities() | {"train_epochs"}

    def train_config(self) -> TrainConfig:
        """The `TrainConfig` of this model's hyper-parameters (a field the model does not take keeps its default)."""
        params = self.get_params()
        return TrainConfig(**{k: params[k] for k in TRAIN_FIELDS if k in params})

    @property
    def sparse_gradients(self) -> bool:
        """True when the optimiser updates only touched rows, so embeddings should be sparse."""
        return getattr(self, "optimizer", "adamw") in SPARSE_OPTIMIZERS

    def fit(self, train: Interactions, valid: Interactions | None = None, *,
            checkpoint_dir: str | Path | None = None, resume: bool = False) -> GradientEstimator:
        """Fit as `Estimator.fit`; `checkpoint_dir` saves each epoch, `resume` continues from it."""
        self._checkpointing = (checkpoint_dir, resume)
        return super().fit(train, valid)  # type: ignore[return-value]

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self._prepare(train)
        cfg = self.train_config()
        with seeded(cfg.seed):
            self.module_ = self._build_module(train.n_users, train.n_items)
        checkpoint_dir, resume = getattr(self, "_checkpointing", (None, False))
        later = self.LATER_PARAMS
        params = {k: v for k, v in self.get_params().items() if k not in later or v != later[k]}
        fingerprint = {"model": self.name, "params": {k: repr(v) for k, v in params.items()},
                       "rows": len(train), "checksum": _data_checksum(train)}
        trainer = Trainer(cfg, checkpoint_dir=checkpoint_dir, resume=resume, fingerprint=fingerprint)
        validate = None if valid is None or len(valid) == 0 else (lambda: self._valid_loss(valid))
        self.history_ = trainer.fit(self.module_, self._batch_loss, self._training_tensors(train), validate,
                                    fused_step=self._fused_step())

    def _prepare(self, train: Interactions) -> None:
        """Hook run before the module is built (e.g. fit a fallback baseline)."""

    def _fused_step(self) -> FusedStep | None:
        """Optionally, a step doing loss, backward and optimiser update at once (see `Trainer.fit`)."""
        return None

    def find_lr(self, train: Interactions, **kwargs: Any) -> LRFind:
        """Run the learning-rate finder on a fresh module (this estimator stays unfitted)."""
        self.check_params()
        train = train.compact()
        self._prepare(train)
        cfg = self.train_config()
        with seeded(cfg.seed):
            self.module_ = self._build_module(train.n_users, train.n_items)
        try:
            return lr_find(self.module_, self._batch_loss, self._training_tensors(train), cfg, **kwargs)
        finally:
            del self.module_

    @property
    def module_device(self) -> torch.device:
        return next(self.module_.parameters()).device

    def score(self, user_idx: torch.Tensor, item_idx: torch.Tensor | None = None) -> torch.Tensor:
        if item_idx is None:
            return self.score_on_device(user_idx).cpu()
        dev = self.module_device
        with torch.no_grad():
            return self.module_(user_idx.to(dev), item_idx.to(dev)).cpu()

    def score_on_device(self, user_idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            return self.module_.score_all(user_idx.to(self.module_device), out=out)

    def _module_extra(self) -> dict[str, Any]:
        return {"n_users": self.n_users, "n_items": self.n_items,
                "history": {"epochs": [e.__dict__ for e in self.history_.epochs],
                            "step_losses": self.history_.step_losses,
                            "best_epoch": self.history_.best_epoch}}

    def _fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"module.{k}": v.detach().cpu() for k, v in self.module_.state_dict().items()}
        return tensors, self._module_extra()

    def _restore(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        self.module_ = self._build_module(extra["n_users"], extra["n_items"])
        self.module_.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("module.")})
        self.module_.to(tensor_device(self.device)).eval()
        h = extra.get("history") or {"epochs": [], "step_losses": []}
        self.history_ = History.from_dict({"epochs": h["epochs"], "step_losses": h["step_losses"],
                                           "best_epoch": h.get("best_epoch")})


class RatingLoss:
    """What every gradient model of explicit ratings shares: the bias baseline and rating range fitted
    before training, the (user, item, rating) training tensors, MSE per batch, RMSE on validation.

    A mixin for `GradientEstimator` subclasses (`RatingModel`, `HybridRatingMF`); it needs `module_`
    scoring (user_idx, item_idx) pairs and `rating_range` among the model's parameters.
    """

    module_: nn.Module
    module_device: torch.device
    rating_range: Any
    baseline_: tuple[float, torch.Tensor, torch.Tensor] | None = None
    rating_range_: tuple[float, float] | None = None
    rating_scale_: tuple[float, float] | None = None  # lo..hi of the training ratings

    def _prepare_ratings(self, train: Interactions, missing: str) -> None:
        """Fit the bias baseline (unknown ids) and resolve the sigmoid's range; `missing`: the error without ratings."""
        if train.rating is None:
            raise ValueError(missing)
        self.baseline_ = fit_biases(train, reg_user=15.0, reg_item=10.0, n_iters=BASELINE_PASSES)
        self.rating_range_ = resolve_rating_range(self.rating_range, train.rating)
        self.rating_scale_ = (float(train.rating.min()), float(train.rating.max()))

    def _training_tensors(self, train: Interactions) -> dict[str, torch.Tensor]:
        return {"user_idx": train.user_idx, "item_idx": train.item_idx, "rating": train.rating}  # type: ignore[dict-item]

    def _batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return mse_loss(self.module_(batch["user_idx"], batch["item_idx"]), batch["rating"])

    def _valid_loss(self, valid: Interactions) -> float:
        dev = self.module_device
        pred = self.module_(valid.user_idx.to(dev), valid.item_idx.to(dev))
        return float(mse_loss(pred, valid.rating.to(dev)).sqrt())  # type: ignore[union-attr]


class RatingModel(RatingLoss, GradientEstimator):
    """A gradient model of explicit ratings: MSE loss, and a bias baseline for unknown ids."""

    task = "rating"

    def _prepare(self, train: Interactions) -> None:
        self._prepare_ratings(train, f"{type(self).__name__} predicts ratings; these interactions have none "
                                     "(use an implicit-feedback model, or name the rating column)")

    rating_range: Any = "auto"

    def cold_scores(self) -> torch.Tensor:
        """The bias-adjusted item mean (clamped to the rating range)."""
        return baseline_cold_scores(self.baseline_, self.rating_range_)  # type: ignore[arg-type]

    def liked_rating(self) -> float | None:
        return liked_rating_of(self, self.rating_range, self.rating_range_, self.rating_scale_)

    def rating_scale(self) -> tuple[float, float] | None:
        return self.rating_scale_

    def output_range(self) -> tuple[float, float] | None:
        return self.rating_range_

    def _fallback(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        mean, user_bias, item_bias = self.baseline_
        out = partial_bias(mean, user_bias, item_bias, user_idx, item_idx)
        return out if self.rating_range_ is None else out.clamp(*self.rating_range_)

    def _fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, extra = super()._fitted_state()
        mean, user_bias, item_bias = self.baseline_
        tensors |= {"baseline.user_bias": user_bias, "baseline.item_bias": item_bias}
        extra |= {"baseline_mean": mean, "rating_range": self.rating_range_}
        if self.rating_scale_ is not None:
            extra["rating_scale"] = list(self.rating_scale_)
        return tensors, extra

    def _restore(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        self.rating_range_ = None if extra["rating_range"] is None else tuple(extra["rating_range"])
        self.baseline_ = (extra["baseline_mean"], tensors["baseline.user_bias"], tensors["baseline.item_bias"])
        scale = extra.get("rating_scale")
        self.rating_scale_ = None if scale is None else (float(scale[0]), float(scale[1]))
        super()._restore(tensors, extra)


def resolve_rating_range(chosen: Any, rating: torch.Tensor) -> tuple[float, float] | None:
    """Output range of the sigmoid: given, None, or "auto" from the data (`core.auto_rating_range`)."""
    if chosen == "auto":
        return auto_rating_range(float(rating.min()), float(rating.max()))
    return None if chosen is None else (float(chosen[0]), float(chosen[1]))


def baseline_cold_scores(baseline: tuple[float, torch.Tensor, torch.Tensor],
                         rating_range: tuple[float, float] | None) -> torch.Tensor:
    """mean + b_i (n_items,), clamped to the rating range when there is one."""
    mean, _, item_bias = baseline
    return (mean + item_bias.float()).clamp(*rating_range) if rating_range else mean + item_bias.float()


def liked_rating_of(model: Estimator, chosen: Any, rating_range: tuple[float, float] | None,
                    scale: tuple[float, float] | None) -> float:
    """The top of the rating scale: with the "auto" range the highest training rating (recorded at fit;
    for older files read back from the range), else the top of the given range. A model without a
    range has an open scale and refuses."""
    if rating_range is None:
        raise ValueError(f"{type(model).__name__} predicts ratings on an open scale: send 'ratings', not 'liked'")
    if chosen != "auto":
        return float(rating_range[1])
    return float((scale or auto_range_data_scale(rating_range))[1])


def _data_checksum(train: Interactions) -> int:
    """A cheap fingerprint of the training rows, so a checkpoint is never resumed on other data."""
    weights = torch.arange(1, len(train) + 1, dtype=torch.int64) % 1_000_003
    total = int((train.user_idx * weights).sum() * 31 + (train.item_idx * weights).sum())
    if train.rating is not None:
        total += int((train.rating.double() * weights).sum() * 1000)
    return total
