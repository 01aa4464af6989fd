"""Synthetic logs: exact sizes, distinct pairs, power laws, learnable structure, files, reproducibility."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from recotorch.data.readers import read_interactions
from recotorch.data.synthetic import generate, synth


@pytest.fixture(scope="module")
def log():
    return generate(n_users=2000, n_items=1000, n_interactions=30_000, dim=8, seed=3, chunk_rows=7_000)


@pytest.fixture(scope="module")
def frame(log) -> pl.DataFrame:
    return log.frame()


def test_sizes_distinct_pairs_and_columns(log, frame):
    assert frame.height == 30_000 == len(log)
    assert frame.columns == ["user", "item", "rating", "timestamp"]
    assert frame["user"].n_unique() == 2000  # every user has a row
    assert frame["item"].max() < 1000 and frame["item"].min() >= 0
    assert not frame.select(pl.struct("user", "item").is_duplicated().any()).item()
    ratings = frame["rating"].to_numpy()
    assert set(np.unique(ratings)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert 2.8 < ratings.mean() < 4.2 and ratings.std() > 0.8
    assert frame["timestamp"].min() >= 1_577_836_800


def test_chunks_are_bounded_and_cover_the_log(log):
    sizes = [c.height for c in log.chunks()]
    assert sum(sizes) == 30_000 and len(sizes) >= 4
    assert max(sizes) <= 7_000 + int(log.user_counts.max())  # a chunk ends after the user that crosses it


def test_popularity_and_activity_follow_power_laws(frame):
    items = frame["item"].value_counts()["count"].sort(descending=True).to_numpy()
    users = frame["user"].value_counts()["count"].sort(descending=True).to_numpy()
    assert items[: len(items) // 10].sum() > 0.45 * items.sum()  # the top 10% of items hold about half
    assert users[: len(users) // 10].sum() > 0.4 * users.sum()
    assert users.min() >= 1 and items.max() > 10 * np.median(items)


def test_ratings_follow_the_planted_model(log):
    data = log.interactions()
    expected = log.truth.expected(data.user_idx, data.item_idx)
    corr = np.corrcoef(expected.numpy(), data.rating.numpy())[0, 1]
    assert corr > 0.8
    # the latent part matters: without the dot product the fit is clearly worse
    no_dot = expected - (log.truth.user_factors[data.user_idx] * log.truth.item_factors[data.item_idx]).sum(1)
    assert np.corrcoef(no_dot.numpy(), data.rating.numpy())[0, 1] < corr - 0.1


def test_same_seed_same_log_other_seed_other_log(frame):
    again = generate(n_users=2000, n_items=1000, n_interactions=30_000, dim=8, seed=3, chunk_rows=7_000).frame()
    assert again.equals(frame)
    other = generate(n_users=2000, n_items=1000, n_interactions=30_000, dim=8, seed=4, chunk_rows=7_000).frame()
    assert not other.equals(frame)


def test_interactions_index_equals_raw_id(log, frame):
    data = log.interactions()
    assert data.n_users == 2000 and data.n_items == 1000 and len(data) == 30_000
    assert torch.equal(data.user_idx, torch.from_numpy(frame["user"].to_numpy(writable=True)))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_written_files_read_back_with_the_project_reader(log, frame, tmp_path, suffix):
    path = log.write(tmp_path / f"log{suffix}")
    assert not list(tmp_path.glob(".*part"))  # no temporary left behind
    data = read_interactions(path)
    assert len(data) == 30_000 and data.meta["duplicates_aggregated"] == 0
    assert data.to_frame().sort("user", "item").equals(
        frame.with_columns(pl.col("rating").cast(pl.Float32)).sort("user", "item"))


def test_synth_writes_a_file(tmp_path):
    path = synth(tmp_path / "s.parquet", n_users=50, n_items=40, n_interactions=500, seed=1)
    assert pl.read_parquet(path).height == 500


def test_heavy_users_of_a_small_catalogue_still_get_distinct_items():
    frame = generate(n_users=5, n_items=40, n_interactions=100, item_alpha=2.0, user_alpha=2.0).frame()
    assert frame.height == 100
    assert frame.group_by("user").len()["len"].max() <= 20  # at most half the catalogue
    assert not frame.select(pl.struct("user", "item").is_duplicated().any()).item()


def test_impossible_requests_are_refused():
    with pytest.raises(ValueError, match="every user"):
        generate(n_users=100, n_items=10, n_interactions=50)
    with pytest.raises(ValueError, match="do not fit"):
        generate(n_users=2, n_items=10, n_interactions=50)
