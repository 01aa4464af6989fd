"""A linear blend of rating models, its weights learnt on held-out rows (how the Netflix Prize was won).

`Blend(components=("mf", "svdpp", "knn_baseline"))` holds out `holdout` of the training rows
(at random, `seed`), fits each component on the rest, and learns the ridge regression

    r ~ w_0 + sum_c w_c * prediction_c        (penalty `reg` * |w|^2, intercept not penalised)

on the held-out rows. It then refits every component on all the training rows and answers
with the same weights, clamped to the training ratings' range. Components are registered
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
from recotorch.train.config import Params, log_uniform, param

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
        reg: float = param(1e-3, ge=0, help="ridge penalty on the weights (times the held-out row count)",
                           tune=log_uniform(1e-6, 1.0))
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
    weights_: torch.Tensor  # (1 + n_components,): intercept, then one weight per component

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
        self.weights_ = _ridge_weights(torch.stack(preds, 1), probe.rating.double(), self.reg).float()  # type: ignore[union-attr]
        self.range_ = (float(train.rating.min()), float(train.rating.max()))
        self.members_ = [self._share(self._member(n).fit(train, valid)) for n in self.components]

    def _share(self, member: Estimator) -> Estimator:
        return share_data(self, member)

    def _combine(self, parts: list[torch.Tensor]) -> torch.Tensor:
        total = torch.full_like(parts[0], float(self.weights_[0]))
        for w, part in zip(self.weights_[1:].tolist(), parts, strict=True):
            total += w * part
        return total.clamp(*self.range_)

    def score(self, user_idx: torch.Tensor, item_idx: torch.Tensor | None = None) -> torch.Tensor:
        return self._combine([m.score(user_idx, item_idx).float() for m in self.members_])

    def _fallback(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        return self._combine([m._fallback(user_idx, item_idx).float() for m in self.members_])

    def cold_scores(self) -> torch.Tensor:
        return self._combine([m.cold_scores().float() for m in self.members_])

    def rating_scale(self) -> tuple[float, float] | None:
        return self.range_

    def output_range(self) -> tuple[float, float] | None:
        return self.range_

    def blend_weights(self) -> dict[str, float]:
        """The learnt weight of each component, and the intercept."""
        return {"intercept": float(self.weights_[0]),
                **{n: float(w) for n, w in zip(self.components, self.weights_[1:].tolist(), strict=True)}}

    # ---- files ----------------------------------------------------------------------------
    def _fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, extras = members_state(self.members_)
        return {"weights": self.weights_, **tensors}, {"members": extras, "range": list(self.range_)}

    def _restore(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        self.weights_ = tensors["weights"]
        self.range_ = tuple(extra["range"])
        self.members_ = restore_members([self._share(self._member(n)) for n in self.components],
                                        tensors, extra["members"])


def _ridge_weights(preds: torch.Tensor, target: torch.Tensor, reg: float) -> torch.Tensor:
    """[w_0, w_1..w_C] minimising |w_0 + preds w - target|^2 + reg n |w|^2 (the intercept free)."""
    mean_p, mean_t = preds.mean(0), target.mean()
    centred = preds - mean_p
    n, c = preds.shape
    prior = torch.full((c,), reg * n, dtype=preds.dtype)
    w = ridge_solve(centred[None], (target - mean_t)[None], prior, torch.zeros(c, dtype=preds.dtype))[0]
    return torch.cat([(mean_t - mean_p @ w).reshape(1), w])
