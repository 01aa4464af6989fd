"""recotorch: recommender systems in PyTorch."""

__version__ = "0.1.0"

from recotorch.artifacts import load, save
from recotorch.data import datasets, splits
from recotorch.data.interactions import Interactions
from recotorch.data.readers import read_interactions, write_interactions
from recotorch.data.vocab import Vocab
from recotorch.models import (
    BCEMF,
    BPRMF,
    EASE,
    MODELS,
    Bagged,
    BiasBaseline,
    ColdStartMF,
    Estimator,
    GlobalMean,
    GRU4Rec,
    HybridMF,
    ImplicitALS,
    ItemKNN,
    KNNBaseline,
    KNNLast,
    MatrixFactorization,
    MostPopular,
    NeuralCF,
    Predictions,
    RankingMF,
    Recommendations,
    RP3beta,
    SASRec,
    SVDpp,
    Transitions,
    make_model,
)

__all__ = [
    "BCEMF",
    "BPRMF",
    "EASE",
    "MODELS",
    "Bagged",
    "BiasBaseline",
    "ColdStartMF",
    "Estimator",
    "GRU4Rec",
    "GlobalMean",
    "HybridMF",
    "ImplicitALS",
    "Interactions",
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
    "Vocab",
    "datasets",
    "load",
    "make_model",
    "read_interactions",
    "save",
    "splits",
    "write_interactions",
]
