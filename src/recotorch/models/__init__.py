"""Models: every estimator shares the `Estimator` face and registers under a short name."""

from __future__ import annotations

import inspect
from typing import Any

from recotorch.models.als import ImplicitALS
from recotorch.models.base import MODELS, Estimator, Predictions, Recommendations
from recotorch.models.baselines import BiasBaseline, GlobalMean
from recotorch.models.coldstart_mf import ColdStartMF
from recotorch.models.ease import EASE
from recotorch.models.ensemble import Bagged
from recotorch.models.hybrid import HybridMF
from recotorch.models.itemknn import ItemKNN
from recotorch.models.mf import MatrixFactorization
from recotorch.models.ncf import NeuralCF
from recotorch.models.popularity import MostPopular
from recotorch.models.ranking_mf import BCEMF, BPRMF, RankingMF
from recotorch.models.rp3beta import RP3beta
from recotorch.models.sequential import GRU4Rec, KNNLast, SASRec, Transitions


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


__all__ = [
    "BCEMF", "BPRMF", "EASE", "GRU4Rec", "KNNLast", "SASRec", "Transitions", "MODELS", "Bagged", "BiasBaseline", "ColdStartMF", "Estimator", "GlobalMean", "HybridMF",
    "ImplicitALS", "ItemKNN", "MatrixFactorization", "MostPopular", "NeuralCF", "Predictions", "RP3beta", "RankingMF",
    "Recommendations", "make_model",
]
