"""Models: every estimator shares the `Estimator` face and registers under a short name."""

from __future__ import annotations

from typing import Any

from recotorch.core.lazy import lazy_attributes
from recotorch.models.base import MODELS, Estimator, Predictions, Recommendations
from recotorch.models.config import build_config, model_class

# class name -> its module, imported on first use (`from recotorch.models import EASE` loads ease alone)
_CLASSES = {
    "BCEMF": "ranking_mf", "BPRMF": "ranking_mf", "Bagged": "ensemble", "BiasBaseline": "baselines",
    "Blend": "blend", "ColdStartMF": "coldstart_mf", "EASE": "ease", "GRU4Rec": "sequential",
    "GlobalMean": "baselines", "HybridMF": "hybrid", "ImplicitALS": "als", "ItemKNN": "itemknn",
    "KNNBaseline": "knn_baseline", "KNNLast": "sequential", "MatrixFactorization": "mf", "MostPopular": "popularity",
    "NeuralCF": "ncf", "RP3beta": "rp3beta", "RankingMF": "ranking_mf", "SASRec": "sequential", "SVDpp": "svdpp",
    "Transitions": "sequential",
}


__getattr__ = lazy_attributes(__name__, _CLASSES)


def make_model(name: str, **options: Any) -> Estimator:
    """Build a registered model by name; options it does not take are refused (`OptionError` with the
    closest name suggested), None ones skipped, values checked against the model's `Config`.

    >>> make_model("mf", dim=32, epochs=3)
    """
    cls = model_class(name)
    given = {k: v for k, v in options.items() if v is not None}
    build_config(cls, given)  # refuses unknown keywords and bad values, also for hand-written constructors
    return cls(**given)


__all__ = [
    "BCEMF",
    "BPRMF",
    "EASE",
    "MODELS",
    "Bagged",
    "BiasBaseline",
    "Blend",
    "ColdStartMF",
    "Estimator",
    "GRU4Rec",
    "GlobalMean",
    "HybridMF",
    "ImplicitALS",
    "ItemKNN",
    "KNNBaseline",
    "KNNLast",
    "MatrixFactorization",
    "MostPopular",
    "NeuralCF",
    "Predictions",
    "RP3beta",
    "RankingMF",
    "Recommendations",
    "SASRec",
    "SVDpp",
    "Transitions",
    "make_model",
]
