"""Models: every estimator shares the `Estimator` face and registers under a short name."""

from __future__ import annotations

from typing import Any

from recotorch.models.als import ImplicitALS
from recotorch.models.base import MODELS, Estimator, Predictions, Recommendations
from recotorch.models.baselines import BiasBaseline, GlobalMean
from recotorch.models.blend import Blend
from recotorch.models.coldstart_mf import ColdStartMF
from recotorch.models.config import build_config, model_class
from recotorch.models.ease import EASE
from recotorch.models.ensemble import Bagged
from recotorch.models.hybrid import HybridMF
from recotorch.models.itemknn import ItemKNN
from recotorch.models.knn_baseline import KNNBaseline
from recotorch.models.mf import MatrixFactorization
from recotorch.models.ncf import NeuralCF
from recotorch.models.popularity import MostPopular
from recotorch.models.ranking_mf import BCEMF, BPRMF, RankingMF
from recotorch.models.rp3beta import RP3beta
from recotorch.models.sequential import GRU4Rec, KNNLast, SASRec, Transitions
from recotorch.models.svdpp import SVDpp


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
