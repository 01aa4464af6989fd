"""Shared fixtures: the real ml-100k (from ../shared/data or RECOTORCH_DATA_DIR) and tiny synthetic data."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import polars as pl
import pytest
import torch

from recotorch.data.interactions import Interactions

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread is faster than two fighting over a shared CPU.

    Use per module with `pytestmark = pytest.mark.usefixtures("one_thread")`.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def digest(path: Path) -> dict[str, str]:
    """SHA-256 of every file in a model directory, to show it was left untouched."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def _ml100k_dir() -> Path:
    candidates = [Path(os.environ["RECOTORCH_DATA_DIR"]) / "ml-100k"] if os.environ.get("RECOTORCH_DATA_DIR") else []
    candidates.append(REPO.parent / "shared" / "data" / "ml-100k")
    for c in candidates:
        if (c / "u.data").exists():
            return c
    raise RuntimeError(f"ml-100k not found in {candidates}; tests need the shared data")


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    return _ml100k_dir()


@pytest.fixture(scope="session")
def ml100k(ml100k_dir: Path) -> Interactions:
    """u.data as Interactions (read directly, independent of the MovieLens reader under test)."""
    frame = pl.read_csv(ml100k_dir / "u.data", separator="\t", has_header=False,
                        new_columns=["user", "item", "rating", "timestamp"])
    return Interactions.from_frame(frame, source=str(ml100k_dir / "u.data"))


def planted_ratings(n_users: int = 80, n_items: int = 50, dim: int = 3, density: float = 0.5,
                    seed: int = 0) -> Interactions:
    """Ratings 1..5 from a planted low-rank matrix plus user/item offsets, a random `density` observed."""
    g = torch.Generator().manual_seed(seed)
    users = torch.randn(n_users, dim, generator=g)
    items = torch.randn(n_items, dim, generator=g)
    full = 3.0 + 0.8 * (users @ items.T) + 0.5 * torch.randn(n_items, generator=g)
    observed = torch.rand(n_users, n_items, generator=g) < density
    u, i = observed.nonzero(as_tuple=True)
    rating = full[u, i].round().clamp(1, 5)
    frame = pl.DataFrame({"user": (u + 1000).numpy(), "item": [f"i{j}" for j in i.tolist()],
                          "rating": rating.numpy(), "timestamp": torch.arange(u.numel()).numpy()})
    return Interactions.from_frame(frame, source="planted")


@pytest.fixture()
def planted() -> Interactions:
    return planted_ratings()
