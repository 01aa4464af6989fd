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

from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
import torch

from recotorch.data.interactions import Interactions
from recotorch.errors import OptionError
from recotorch.models.base import MODELS, Estimator, register
from recotorch.models.config import field_names
from recotorch.train.config import OptimizerName, Params, param

__all__ = ["Bagged", "members_state", "restore_members", "share_data"]

NOT_SHARED = ("base", "members", "seed", "params")  # every other field goes to every member


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

    @dataclass
    class Config(Params):
        base: str = param("mf_coldstart", help="the registered model each member is")
        members: int = param(5, ge=1, help="members, trained with seeds seed .. seed + members - 1")
        seed: int = param(0, help="seed of the first member")
        dim: int | None = param(None, ge=1, help="passed to every member (None: the base's default)")
        epochs: int | None = param(None, ge=1, help="passed to every member")
        lr: float | None = param(None, gt=0, help="passed to every member")
        batch_size: int | None = param(None, ge=1, help="passed to every member")
        weight_decay: float | None = param(None, ge=0, help="passed to every member")
        patience: int | None = param(None, ge=1, help="passed to every member")
        device: str | None = param(None, help="passed to every member")
        optimizer: OptimizerName | None = param(None, help="passed to every member")  # noqa: RUF009
        amp: bool | None = param(None, help="passed to every member")
        params: dict[str, Any] | None = param(None, help="further options of every member")  # noqa: RUF009

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.base not in MODELS or self.base == Bagged.name:
                raise OptionError("base", f"unknown base model {self.base!r}; choose one of "
                                          f"{sorted(set(MODELS) - {Bagged.name})}")

    def _apply_config(self, config: Any) -> None:
        super()._apply_config(config)
        self.task = MODELS[self.base].task

    members_: list[Estimator]

    # ---- members -------------------------------------------------------------------------
    def _member(self, i: int) -> Estimator:
        """An unfitted member i (seed `seed + i`)."""
        from recotorch.models import make_model

        shared = {k: getattr(self, k) for k in field_names(type(self).Config) if k not in NOT_SHARED}
        return make_model(self.base, **{**shared, **(self.params or {}), "seed": self.seed + i})

    def _share(self, member: Estimator) -> Estimator:
        return share_data(self, member)

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
        return self.members_[0].fallback(user_idx, item_idx)

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
        tensors, extras = members_state(self.members_)
        return tensors, {"members": extras}

    def _restore(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        self.members_ = restore_members([self._share(self._member(i)) for i in range(len(extra["members"]))],
                                        tensors, extra["members"])


def share_data(owner: Estimator, member: Estimator) -> Estimator:
    """Give a member the owner's vocabularies, seen items and features (they are fitted on the same data)."""
    member.users_, member.items_, member.seen_ = owner.users_, owner.items_, owner.seen_
    member.item_features_, member.user_features_ = owner.item_features_, owner.user_features_
    return member


def members_state(members: list[Estimator]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Each member's fitted tensors under `member{i}.` and the list of their extras (what a composite saves)."""
    tensors: dict[str, torch.Tensor] = {}
    extras = []
    for i, member in enumerate(members):
        t, extra = member._fitted_state()
        tensors |= {f"member{i}.{k}": v for k, v in t.items()}
        extras.append(extra)
    return tensors, extras


def restore_members(members: list[Estimator], tensors: dict[str, torch.Tensor],
                    extras: list[dict[str, Any]]) -> list[Estimator]:
    """`members_state` undone: each (unfitted, data-shared) member restored from its prefixed tensors."""
    for i, (member, extra) in enumerate(zip(members, extras, strict=True)):
        prefix = f"member{i}."
        member._restore({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, extra)
    return members
