"""Interaction data: the core types, file readers, MovieLens layouts and named datasets."""

from recotorch.data.datasets import available, load
from recotorch.data.errors import ChecksumError, DataError, DownloadError
from recotorch.data.movielens import detect_layout, load_movielens
from recotorch.data.readers import read_interactions, write_interactions

__all__ = [
    "ChecksumError",
    "DataError",
    "DownloadError",
    "available",
    "detect_layout",
    "load",
    "load_movielens",
    "read_interactions",
    "write_interactions",
]
