"""A linear blend of rating models, its weights learnt on held-out rows (how the Netflix Prize was won).

`Blend(components=("mf", "svdpp", "knn_baseline"))` holds out `holdout` of the training rows
(at random, `seed`), fits each component on the rest, and learns the ridge regression

    r ~ w_0 + sum_c w_c * prediction_c        (penalty `reg` * |w|^2, intercept not penalised)

on the held-out rows. With `by_support` (the default) each weight also varies linearly with the
log number of training ratings of the user and of the item (feature-weighted linear stacking,
Sill et al. 2009: a neighbourhood model is worth more for items with many ratings, a factor
model for users with many), w_c + a_c z_u + b_c z_i, plus terms in z_u and z_i themselves.
It then refits every component on all the training rows and answers with the same weights,
clamped to the training ratings' range. Components are registered
rating models; `params` gives options per component name, e.g. `{"mf": {"dim": 64}}`.
Unknown ids get the weighted sum of the components' fallbacks (their bias baselines).

    >>> Blend(components=("mf", "knn_baseline"), params={"mf": {"epochs": 8}}).fit(train)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from recotorch.core.maths import ridge_solve
from recotorch.data.interactions import Interactions
from recotorch.errors import OptionError
from recotorch.models.base import MODELS, Estimator, register
from recotorch.models.ensemble import members_state, restore_members, share_data
from recotorch.train.config import Params, param

DEFAULT_COMPONENTS = ("mf", "svdpp", "knn_baseline", "bias")


@register
class Blend(Estimator):
    """Ridge-weighted sum of several rating models' predictions, weights learnt on held-out training rows."""

    name = "blend"
    task = "rating"
    TEST_PARAMS: ClassVar[dict[str, Any]] = {"components": ("mf", "knn_baseline"),
                                             "params": {"mf": {"dim": 4, "epochs": 2}, "knn_baseline": {"k": 5}}}

    @dataclass
    class Config(Params):
        components: Sequence[str] = param(DEFAULT_COMPONENTS, help="registered rating models to blend")
        params: dict[str, Any] | None = param(None, help="options per component, e.g. {'mf': {'dim': 64}}")  # noqa: RUF009
        holdout: float = param(0.1, gt=0, lt=1, help="share of training rows the weights are learnt on")
        # not searched by the tuner: on ml-100k reg 6e-4..1e-3 gave the same validation RMSE, and each
        # sampled blend costs two fits of every component (the tuner's own blend tunes the members instead)
        reg: float = param(1e-3, ge=0, help="ridge penalty on the weights (times the held-out row count)")
        by_support: bool = param(True, help="weights vary with the log rating counts of the user and the item "
                                            "(feature-weighted stacking)")
        seed: int = param(0, help="seed of the held-out draw and of the components")

        def __post_init__(self) -> None:
            self.components = tuple(self.components)
            super().__post_init__()
            if not self.components:
                raise OptionError("components", "give at least one model")
            for name in self.components:
                # a class without a fixed task (e.g. hybrid) decides at construction; it checks the data itself
                if name not in MODELS or getattr(MODELS[name], "task", "rating") != "rating" or name == Blend.name:
                    rating = sorted(n for n, c in MODELS.items() if getattr(c, "task", None) == "rating"
                                    and n != Blend.name)
                    raise OptionError("components", f"{name!r} is not a rating model; choose from {rating}")
            for name in self.params or {}:
                if name not in self.components:
                    raise OptionError("params", f"{name!r} is not one of the components {list(self.components)}")

    members_: list[Estimator]
    weights_: torch.Tensor  # intercept, one weight per component, then (by_support) the support terms
    support_: tuple[torch.Tensor, torch.Tensor] | None = None  # standardised log counts (users, items)

    def _member(self, name: str) -> Estimator:
        from recotorch.models import make_model

        options = dict((self.params or {}).get(name, {}))
        if "seed" in MODELS[name].Config.__dataclass_fields__:
            options.setdefault("seed", self.seed)
        return make_model(name, **options)

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        if train.rating is None:
            raise ValueError(f"{type(self).__name__} needs ratings; these interactions have none")
        g = torch.Generator().manual_seed(self.seed)
        held = torch.rand(len(train), generator=g) < self.holdout
        rest, probe = train.subset(~held), train.subset(held)
        if len(probe) == 0 or len(rest) == 0:
            raise ValueError(f"holdout={self.holdout} leaves no rows on one side of {len(train)} training rows")
        users = probe.users.ids.to_numpy()[probe.user_idx.numpy()]
        items = probe.items.ids.to_numpy()[probe.item_idx.numpy()]
        preds = [torch.from_numpy(self._member(n).fit(rest).predict(users, items).values).double()
                 for n in self.components]
        columns = torch.stack(preds, 1)
        if self.by_support:
            # the counts the members see after the refit: those of the rest, scaled to all the rows
            su, si = _support(rest, scale=len(train) / len(rest))
            self.stats_ = [float(su.mean()), float(su.std()) or 1.0, float(si.mean()), float(si.std()) or 1.0]
            fu = (su[probe.user_idx] - self.stats_[0]) / self.stats_[1]
            fi = (si[probe.item_idx] - self.stats_[2]) / self.stats_[3]
            columns = _with_support(columns, fu.double(), fi.double())
        self.weights_ = _ridge_weights(columns, probe.rating.double(), self.reg).float()  # type: ignore[union-attr]
        self.range_ = (float(train.rating.min()), float(train.rating.max()))
        if self.by_support:
            su, si = _support(train)
            self.support_ = ((su - self.stats_[0]) / self.stats_[1], (si - self.stats_[2]) / self.stats_[3])
        self.members_ = [self._share(self._member(n).fit(train, valid)) for n in self.components]

    def _share(self, member: Estimator) -> Estimator:
        return share_data(self, member)

    def _features(self, user_idx: torch.Tensor | None, item_idx: torch.Tensor | None,
                  full: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_u, z_i) shaped to broadcast against the parts: (B,) and (B,) for pairs, (B, 1) and (1, n_items)
        for full rows; an unknown id (-1) or no user (cold) gets the standardised support of zero ratings."""
        assert self.support_ is not None
        su, si = self.support_
        zero_u, zero_i = -self.stats_[0] / self.stats_[1], -self.stats_[2] / self.stats_[3]
        fu = torch.full((1,), zero_u) if user_idx is None else _lookup(su, user_idx, zero_u)
        fi = si if item_idx is None else _lookup(si, item_idx, zero_i)
        return (fu[:, None], fi[None, :]) if full else (fu, fi)

    def _combine(self, parts: list[torch.Tensor], user_idx: torch.Tensor | None = None,
                 item_idx: torch.Tensor | None = None, *, full: bool = False) -> torch.Tensor:
        w = self.weights_.tolist()
        total = torch.full_like(parts[0], w[0])
        c = len(parts)
        if self.support_ is None:
            for weight, part in zip(w[1:], parts, strict=True):
                total += weight * part
            return total.clamp(*self.range_)
        fu, fi = self._features(user_idx, item_idx, full)
        for k, part in enumerate(parts):
            total += (w[1 + k] + w[1 + c + k] * fu + w[1 + 2 * c + k] * fi) * part
        total += w[1 + 3 * c] * fu + w[2 + 3 * c] * fi
        return total.clamp(*self.range_)

    def score(self, user_idx: torch.Tensor, item_idx: torch.Tensor | None = None) -> torch.Tensor:
        return self._combine([m.score(user_idx, item_idx).float() for m in self.members_], user_idx, item_idx,
                             full=item_idx is None)

    def _fallback(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        return self._combine([m.fallback(user_idx, item_idx).float() for m in self.members_], user_idx, item_idx)

    def cold_scores(self) -> torch.Tensor:
        parts = [m.cold_scores().float() for m in self.members_]
        if self.support_ is None:
            return self._combine(parts)
        return self._combine([p[None, :] for p in parts], None, None, full=True)[0]

    def rating_scale(self) -> tuple[float, float] | None:
        return self.range_

    def output_range(self) -> tuple[float, float] | None:
        return self.range_

    def blend_weights(self) -> dict[str, float]:
        """The learnt weight of each component (at average support), and the intercept."""
        c = len(self.components)
        return {"intercept": float(self.weights_[0]),
                **{n: float(w) for n, w in zip(self.components, self.weights_[1 : 1 + c].tolist(), strict=True)}}

    # ---- files ----------------------------------------------------------------------------
    def _fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, extras = members_state(self.members_)
        tensors = {"weights": self.weights_, **tensors}
        extra: dict[str, Any] = {"members": extras, "range": list(self.range_)}
        if self.support_ is not None:
            tensors |= {"support.users": self.support_[0], "support.items": self.support_[1]}
            extra["support_stats"] = self.stats_
        return tensors, extra

    def _restore(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        self.weights_ = tensors["weights"]
        self.range_ = tuple(extra["range"])
        if "support.users" in tensors:
            self.support_ = (tensors["support.users"], tensors["support.items"])
            self.stats_ = [float(v) for v in extra["support_stats"]]
        else:  # saved before `by_support` existed (its params lack the field, which defaults to True)
            self.support_, self.by_support = None, False
        self.members_ = restore_members([self._share(self._member(n)) for n in self.components],
                                        tensors, extra["members"])


def _support(data: Interactions, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """log(1 + ratings per user), log(1 + ratings per item) in `data` (counts times `scale`)."""
    users = torch.bincount(data.user_idx, minlength=data.n_users).double() * scale
    items = torch.bincount(data.item_idx, minlength=data.n_items).double() * scale
    return torch.log1p(users).float(), torch.log1p(items).float()


def _lookup(values: torch.Tensor, idx: torch.Tensor, missing: float) -> torch.Tensor:
    out = torch.full((idx.numel(),), missing)
    known = idx >= 0
    out[known] = values[idx[known]]
    return out


def _with_support(preds: torch.Tensor, fu: torch.Tensor, fi: torch.Tensor) -> torch.Tensor:
    """The stacking columns: each prediction, times z_u, times z_i, then z_u and z_i themselves."""
    return torch.cat([preds, preds * fu[:, None], preds * fi[:, None], fu[:, None], fi[:, None]], 1)


def _ridge_weights(preds: torch.Tensor, target: torch.Tensor, reg: float) -> torch.Tensor:
    """[w_0, w_1..w_C] minimising |w_0 + preds w - target|^2 + reg n |w|^2 (the intercept free)."""
    mean_p, mean_t = preds.mean(0), target.mean()
    centred = preds - mean_p
    n, c = preds.shape
    prior = torch.full((c,), reg * n, dtype=preds.dtype)
    w = ridge_solve(centred[None], (target - mean_t)[None], prior, torch.zeros(c, dtype=preds.dtype))[0]
    return torch.cat([(mean_t - mean_p @ w).reshape(1), w])
