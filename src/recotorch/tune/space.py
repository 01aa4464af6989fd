"""A model's declared search space (`recotorch.models.config.search_space`) as Optuna suggestions.

Parameter names are prefixed by the model (`ease.reg`), so one study searches every family
(a conditional space). A hyper-parameter whose default is None (off, e.g. `half_life`) is searched
behind a switch `ease.half_life?` in {False, True}, so "off" stays a candidate. Settings that change
how a model computes rather than what it learns are not searched (`NOT_SEARCHED`).
"""

from __future__ import annotations

from typing import Any

from recotorch.models.config import describe, search_space
from recotorch.train.config import Tune

# Numerical precision, units of another option, solvers, optimiser choice and cold-start-only parts
# are settings, not modelling choices: the tuner leaves them at their defaults.
NOT_SEARCHED = frozenset({"dtype", "half_life_unit", "solver", "optimizer", "task", "support", "prior",
                          "meta_epochs", "meta_lr"})


def searched(name: str, *, timestamps: bool) -> dict[str, Tune | tuple[Any, ...]]:
    """The fields of model `name` the tuner varies (time-only fields only when the data has times)."""
    from recotorch.tune.candidates import NEEDS_TIME

    return {k: v for k, v in search_space(name).items()
            if k not in NOT_SEARCHED and (timestamps or k not in NEEDS_TIME)}


def _optional(name: str) -> set[str]:
    return {f.name for f in describe(name) if f.default is None}


def suggest(trial: Any, name: str, *, timestamps: bool) -> dict[str, Any]:
    """Sample model `name`'s hyper-parameters in an Optuna trial; returns {field: value} (None = off)."""
    optional = _optional(name)
    params: dict[str, Any] = {}
    for field, spec in searched(name, timestamps=timestamps).items():
        key = f"{name}.{field}"
        if field in optional and not trial.suggest_categorical(f"{key}?", [False, True]):
            params[field] = None
            continue
        if isinstance(spec, tuple):
            params[field] = trial.suggest_categorical(key, list(spec))
        elif spec.kind == "int":
            params[field] = trial.suggest_int(key, int(spec.low), int(spec.high), log=spec.log)
        else:
            params[field] = trial.suggest_float(key, float(spec.low), float(spec.high), log=spec.log)
    return {k: v for k, v in params.items() if v is not None}


def default_point(name: str, *, timestamps: bool) -> dict[str, Any]:
    """The Optuna parameters of model `name` at its defaults (for the first trial of each family);
    a default outside the declared range is left to the sampler."""
    infos = {f.name: f for f in describe(name)}
    point: dict[str, Any] = {}
    for field, spec in searched(name, timestamps=timestamps).items():
        key, default = f"{name}.{field}", infos[field].default
        if default is None:
            point[f"{key}?"] = False
        elif isinstance(spec, tuple):
            if default in spec:
                point[key] = default
        elif spec.low <= default <= spec.high:
            point[key] = int(default) if spec.kind == "int" else float(default)
    return point


def searchable(names: list[str], *, timestamps: bool) -> list[str]:
    """The families with something to search (the others run once, at their defaults)."""
    return [n for n in names if searched(n, timestamps=timestamps)]
