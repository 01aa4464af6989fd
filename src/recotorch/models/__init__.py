"""Models: every estimator shares the `Estimator` face and registers under a short name."""

from __future__ import annotations

import inspect
from typing import Any

from recotorch.models.base import MODELS, Estimator, Predictions, Recommendations
from recotorch.models.baselines import BiasBaseline, GlobalMean
from recotorch.models.mf import MatrixFactorization
from recotorch.models.ncf import NeuralCF


def make_model(name: str, **options: Any) -> Estimator:
    """Build a registered model by name; options it does not take are refused, None ones skipped.

    >>> make_model("mf", dim=32, epochs=3)
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    cls = MODELS[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - accepted)
    if unknown:
        raise ValueError(f"model {name!r} does not take {unknown}; it takes {sorted(accepted)}")
    return cls(**given)


__all__ = ["MODELS", "BiasBaseline", "Estimator", "GlobalMean", "MatrixFactorization", "NeuralCF",
           "Predictions", "Recommendations", "make_model"]
