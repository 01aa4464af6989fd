"""recotorch: recommender systems in PyTorch.

`import recotorch` is light: each public name below loads its module (and torch) on first use,
so `recotorch --version` and `--help` start in a fraction of a second.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_MODELS = ("BCEMF", "BPRMF", "EASE", "MODELS", "Bagged", "BiasBaseline", "Blend", "ColdStartMF", "Estimator", "GRU4Rec",
           "GlobalMean", "HybridMF", "ImplicitALS", "ItemKNN", "KNNLast", "MatrixFactorization", "MostPopular",
           "NeuralCF", "Predictions", "RP3beta", "RankingMF", "Recommendations", "SASRec", "Transitions",
           "make_model")
_HOMES: dict[str, str] = {
    "load": "recotorch.artifacts", "save": "recotorch.artifacts",
    "Interactions": "recotorch.data.interactions",
    "read_interactions": "recotorch.data.readers", "write_interactions": "recotorch.data.readers",
    "Vocab": "recotorch.data.vocab",
    "set_threads": "recotorch.core.threads",
    **dict.fromkeys(_MODELS, "recotorch.models"),
}
_MODULES = {"datasets": "recotorch.data.datasets", "splits": "recotorch.data.splits"}

__all__ = sorted([*_HOMES, *_MODULES])


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    elif name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    elif not name.startswith("_") and name in _models_exports():  # a model not (yet) listed in _MODELS
        value = getattr(importlib.import_module("recotorch.models"), name)
    else:
        raise AttributeError(f"module 'recotorch' has no attribute {name!r}")
    globals()[name] = value
    return value


def _models_exports() -> tuple[str, ...]:
    return tuple(getattr(importlib.import_module("recotorch.models"), "__all__", ()))


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
