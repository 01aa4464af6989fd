"""recotorch: recommender systems in PyTorch."""

__version__ = "0.1.0"

from recotorch.artifacts import load, save
from recotorch.data import datasets, splits
from recotorch.data.interactions import Interactions
from recotorch.data.readers import read_interactions, write_interactions
from recotorch.data.vocab import Vocab
from recotorch.models.base import Estimator, Predictions, Recommendations
from recotorch.models.baselines import BiasBaseline, GlobalMean
from recotorch.models.mf import MatrixFactorization
from recotorch.models.ncf import NeuralCF

__all__ = [
    "BiasBaseline",
    "Estimator",
    "GlobalMean",
    "Interactions",
    "MatrixFactorization",
    "NeuralCF",
    "Predictions",
    "Recommendations",
    "Vocab",
    "datasets",
    "load",
    "read_interactions",
    "save",
    "splits",
    "write_interactions",
]
