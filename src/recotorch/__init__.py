"""recotorch: recommender systems in PyTorch."""

__version__ = "0.1.0"

from recotorch.artifacts import load, save
from recotorch.data.interactions import Interactions
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
    "load",
    "save",
]
