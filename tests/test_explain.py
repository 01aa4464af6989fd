"""Explaining a trained model: bias tables with real titles, the PCA map, neighbours, clusters."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch

import recotorch as rt
from recotorch.data.movielens import load_movielens
from recotorch.explain import item_bias_table, kmeans, nearest_items, pca_map, user_clusters
from recotorch.explain.plots import MAP_SIZE


@pytest.fixture(scope="module")
def mf_dir(ml100k_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = rt.MatrixFactorization(epochs=5).fit(load_movielens(ml100k_dir))
    return model.save(tmp_path_factory.mktemp("explain") / "mf")


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_bias_tables_hold_real_titles_in_order(mf_dir):
    model = rt.load(mf_dir)
    tables = item_bias_table(model, n=10, min_count=20)
    low, high = tables["lowest"], tables["highest"]
    assert low["bias"].is_sorted() and high["bias"].is_sorted(descending=True)
    assert low["bias"].max() < high["bias"].min()
    assert (low["ratings"] >= 20).all()
    titles = set(high["title"].to_list()) | set(low["title"].to_list())
    assert titles & {"Star Wars", "Schindler's List", "Casablanca", "Shawshank Redemption, The",
                     "Usual Suspects, The", "Titanic", "Godfather, The", "Silence of the Lambs, The"}


def test_pca_map_explains_variance_and_names_the_ends(mf_dir):
    model = rt.load(mf_dir)
    result = pca_map(model, n_components=3, top_items=500)
    assert len(result.coords) == 500
    assert result.explained == sorted(result.explained, reverse=True) and sum(result.explained) < 1
    # component scores are uncorrelated (that is what PCA promises)
    pcs = torch.tensor(result.coords.select("pc1", "pc2").to_numpy())
    assert abs(float(torch.corrcoef(pcs.T)[0, 1])) < 1e-3
    assert set(result.loadings["end"]) == {"negative", "positive"}
    assert result.genres is not None and "Drama" in result.genres["genre"].to_list()


def test_nearest_items_to_star_wars_are_its_sequels(mf_dir):
    model = rt.load(mf_dir)
    near = nearest_items(model, 50, k=5)  # 50 = Star Wars (1977)
    assert 50 not in near["item"].to_list()
    assert near["similarity"].is_sorted(descending=True)
    assert {"Return of the Jedi", "Empire Strikes Back, The"} & set(near["title"].to_list())


def test_kmeans_separates_obvious_groups():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(50, 2, generator=g) * 0.1 + 5, torch.randn(60, 2, generator=g) * 0.1 - 5])
    labels, _ = kmeans(x, 2, seed=1)
    assert torch.bincount(labels).sort().values.tolist() == [50, 60]
    assert labels[:50].unique().numel() == 1 and labels[50:].unique().numel() == 1
    with pytest.raises(ValueError):
        kmeans(x, 0)


def test_user_clusters_cover_every_user(mf_dir):
    model = rt.load(mf_dir)
    profile = user_clusters(model, k=4)
    assert profile.profiles["users"].sum() == model.n_users == len(profile.assignments)
    assert all(len(g) == 3 for g in profile.profiles["top_genres"])


@pytest.mark.slow
def test_explain_cli_writes_the_map_and_the_tables(mf_dir, tmp_path):
    out = tmp_path / "explain"
    proc = subprocess.run([sys.executable, "-m", "recotorch", "explain", str(mf_dir), "--out", str(out),
                           "--item", "50", "--clusters", "3"], capture_output=True, text=True,
                          timeout=1800)  # a hang guard only
    assert proc.returncode == 0, proc.stderr
    assert _png_size(out / "pca_map.png") == MAP_SIZE
    highest = pl.read_csv(out / "bias_highest.csv")
    assert highest.columns[:3] == ["item", "title", "bias"]
    assert highest["title"].str.len_chars().min() > 0 and not highest["title"].str.contains(r"^\d+$").any()
    assert "Nearest items to 50" in proc.stdout
    assert (out / "explain.json").exists() and (out / "user_clusters.csv").exists()
