"""Seed bagging: several copies of one registered model, trained with different seeds, averaged.

`Bagged(base="mf_coldstart", members=5)` fits `members` copies of the model registered as `base`
on the same data with seeds `seed`, `seed + 1`, ..., `seed + members - 1` (everything else the
same) and answers with the mean of their scores: `predict`, `score`, `recommend`, and for new
users `fold_in`, which folds the user into every member (each with its own prior, or its own
demographic prior) and averages the members' predictions. The members differ only in their
random initialisation and batch order, so averaging removes part of the variance of one model.

The base is chosen in Python (`Bagged(base="mf", members=3)` or `make_model("bagged", base="mf")`);
the gradient options the CLI exposes (`--dim`, `--epochs`, `--lr`, ...) go to every member, so
`recotorch fit ... --model bagged --seed 3` trains the default, five `mf_coldstart` members with seeds
3..7. Any other option of the base goes in `params`, e.g. `Bagged(base="mf_coldstart",
params={"prior": "population"})`. Files: each member's tensors under `member{i}.` and its extras in
a list in model.json, so `recotorch.load` gives back the same members.

    >>> model = Bagged(base="mf_coldstart", members=5).fit(train)
    >>> recotorch.online.predict_for_new_user(model, [50, 172], [5, 4], target_items=[1, 2])
"""

from __future__ import annotations

from typing import Any, ClassVar

import polars as pl
import torch

from recotorch.data.interactions import Interactions
from recotorch.models.base import MODELS, Estimator, register

__all__ = ["Bagged"]

SHARED_OPTIONS = ("dim", "epochs", "lr", "batch_size", "weight_decay", "patience", "device", "optimizer", "amp")


@register
class Bagged(Estimator):
    """The mean of `members` copies of model `base` trained with seeds seed .. seed + members - 1.

    `dim`, `epochs`, `lr`, `batch_size`, `weight_decay`, `patience`, `device`, `optimizer` and `amp`
    (None: the base's default) and the entries of `params` are passed to every member. Unknown ids
    get the base's fallback (for rating models the bias baseline, the same in every member).
    """

    name = "bagged"
    task = "rating"
    TEST_PARAMS: ClassVar[dict[str, Any]] = {"base": "mf", "members": 2, "dim": 4, "epochs": 2}

    def __init__(self, base: str = "mf_coldstart", members: int = 5, seed: int = 0, dim: int | None = None,
                 epochs: int | None = None, lr: float | None = None, batch_size: int | None = None,
                 weight_decay: float | None = None, patience: int | None = None, device: str | None = None,
                 optimizer: str | None = None, amp: bool | None = None,
                 params: dict[str, Any] | None = None) -> None:
        self._set_params(locals())
        if base not in MODELS or base == self.name:
            raise ValueError(f"bagged: unknown base model {base!r}; choose one of "
                             f"{sorted(set(MODELS) - {self.name})}")
        if members < 1:
            raise ValueError(f"bagged: members must be at least 1, got {members}")
        self.task = MODELS[base].task

    members_: list[Estimator]

    # ---- members -------------------------------------------------------------------------
    def _member(self, i: int) -> Estimator:
        """An unfitted member i (seed `seed + i`)."""
        from recotorch.models import make_model

        shared = {k: getattr(self, k) for k in SHARED_OPTIONS}
        return make_model(self.base, **{**shared, **(self.params or {}), "seed": self.seed + i})

    def _share(self, member: Estimator) -> Estimator:
        """Give a member this model's vocabularies, seen items and features (they are the same data)."""
        member.users_, member.items_, member.seen_ = self.users_, self.items_, self.seen_
        member.item_features_, member.user_features_ = self.item_features_, self.user_features_
        return member

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.members_ = []
        for i in range(self.members):
            member = self._member(i).fit(train, valid)
            self.members_.append(self._share(member))  # train is compacted already: same vocabularies

    # ---- answers -------------------------------------------------------------------------
    def score(self, user_idx: torch.Tensor, item_idx: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack([m.score(user_idx, item_idx).float() for m in self.members_]).mean(0)

    def score_on_device(self, user_idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        total = self.members_[0].score_on_device(user_idx).float().clone()
        for m in self.members_[1:]:
            total += m.score_on_device(user_idx).float().to(total.device)
        return total.div_(len(self.members_))

    def _fallback(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """The base's answer for unknown ids: rating models' bias baseline is fitted from the data alone,
        the same in every member, so the first member gives it."""
        return self.members_[0]._fallback(user_idx, item_idx)

    # ---- capabilities: composed from the members' ---------------------------------------
    def capabilities(self) -> frozenset[str]:
        """Fold-in when the base folds in; nothing else (no single vector space, no update of all members)."""
        return frozenset({"fold_in"}) & self._member(0).capabilities()

    def fold_in(self, item_idx: torch.Tensor, values: torch.Tensor | None = None, *, reg: float | None = None,
                reg_bias: float | None = None, user_features: pl.DataFrame | None = None) -> torch.Tensor:
        """Each member's representation, side by side (B, members x the base's D)."""
        return torch.cat([m.fold_in(item_idx, values, reg=reg, reg_bias=reg_bias, user_features=user_features)
                          for m in self.members_], 1)

    def score_new_users(self, vectors: torch.Tensor) -> torch.Tensor:
        return self._mean_of_members(vectors, lambda m, v: m.score_new_users(v))

    def score_new_user_pairs(self, vectors: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        return self._mean_of_members(vectors, lambda m, v: m.score_new_user_pairs(v, item_idx))

    def _mean_of_members(self, vectors: torch.Tensor, scores: Any) -> torch.Tensor:
        """Mean over the members of `scores(member, that member's slice of vectors)`."""
        parts = vectors.tensor_split(len(self.members_), dim=1)
        return torch.stack([scores(m, v).float() for m, v in zip(self.members_, parts, strict=True)]).mean(0)

    def cold_scores(self) -> torch.Tensor:
        """The base's answer (rating models: the bias baseline, the same in every member)."""
        return self.members_[0].cold_scores()

    def liked_rating(self) -> float | None:
        return self.members_[0].liked_rating()

    def output_range(self) -> tuple[float, float] | None:
        return self.members_[0].output_range()

    # ---- files ---------------------------------------------------------------------------
    def _fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors: dict[str, torch.Tensor] = {}
        extras = []
        for i, member in enumerate(self.members_):
            t, extra = member._fitted_state()
            tensors |= {f"member{i}.{k}": v for k, v in t.items()}
            extras.append(extra)
        return tensors, {"members": extras}

    def _restore(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        self.members_ = []
        for i, member_extra in enumerate(extra["members"]):
            prefix = f"member{i}."
            member = self._share(self._member(i))
            member._restore({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, member_extra)
            self.members_.append(member)
