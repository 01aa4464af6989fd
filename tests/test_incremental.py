"""Incremental updates: a new model directory from a saved one plus new rows; the source stays untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

import recotorch as rt
from recotorch.artifacts import read_meta
from recotorch.data.implicit import to_implicit
from recotorch.data.interactions import Interactions
from recotorch.models import make_model
from recotorch.online.updates import update
from tests.conftest import digest, planted_ratings

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def planted() -> Interactions:
    return planted_ratings(n_users=100, n_items=50, density=0.6)


@pytest.fixture(scope="module")
def parts(planted) -> tuple[Interactions, Interactions]:
    """(base: all rows of users 0-89 on items 0-44, new: everything else, i.e. 10 new users and 5 new items)."""
    frame = planted.to_frame()
    users, items = planted.users.ids[:90].to_list(), [f"i{j}" for j in range(45)]
    old = pl.col("user").is_in(users) & pl.col("item").is_in(items)
    return Interactions.from_frame(frame.filter(old)), Interactions.from_frame(frame.filter(~old))


def _mf() -> rt.MatrixFactorization:
    return rt.MatrixFactorization.course(dim=8, epochs=40, batch_size=256, lr=2e-2, weight_decay=0.05)


def _rmse(model: rt.Estimator, rows: Interactions) -> tuple[float, int]:
    frame = rows.to_frame()
    pred = model.predict(frame["user"], frame["item"])
    return float(np.sqrt(np.mean((pred.values - frame["rating"].to_numpy()) ** 2))), pred.n_fallback


@pytest.fixture(scope="module")
def saved_mf(parts, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "mf"
    _mf().fit(parts[0]).save(path)
    return path


def test_update_adds_users_and_items_and_leaves_the_source_alone(saved_mf, parts, tmp_path):
    _, new = parts
    perm = torch.randperm(len(new), generator=torch.Generator().manual_seed(0))
    given, held = new.subset(perm[: len(new) // 2]), new.subset(perm[len(new) // 2 :])
    before = digest(saved_mf)
    out = update(saved_mf, given, tmp_path / "mf-v1")
    assert digest(saved_mf) == before
    parent, child = rt.load(saved_mf), rt.load(out)
    assert child.n_users == 100 and child.n_items == 50
    assert child.users_.ids[:90].to_list() == parent.users_.ids.to_list()  # old indices keep their meaning
    meta = read_meta(out)["extra"]
    assert meta["version"] == 1 and meta["parent"] == str(saved_mf.resolve())
    assert meta["update"]["new_users"] == 10 and meta["update"]["new_items"] == 5
    old_rmse, old_fallback = _rmse(parent, held)
    new_rmse, new_fallback = _rmse(child, held)
    assert new_fallback < old_fallback and new_rmse < 0.9 * old_rmse, (old_rmse, new_rmse)
    pairs = (torch.arange(3), torch.arange(3))
    torch.testing.assert_close(child.score(*pairs), parent.score(*pairs), atol=0.3, rtol=0)  # known users barely move
    new_user = child.users_.ids[95]
    assert len(child.recommend([new_user], k=5).item_ids(0)) == 5
    assert set(child.items_.lookup(child.seen_.row(95).numpy())) == set(
        given.to_frame().filter(pl.col("user") == new_user)["item"].to_list())
    again = update(out, held, tmp_path / "mf-v2")  # a chain of versions
    assert read_meta(again)["extra"]["version"] == 2 and read_meta(again)["extra"]["parent"] == str(out.resolve())


def test_new_ratings_move_a_known_user(saved_mf, tmp_path):
    parent = rt.load(saved_mf)
    user = parent.users_.ids[0]
    unseen = [i for i in parent.items_.ids.to_list() if i not in set(parent.items_.lookup(parent.seen_.row(0).numpy()))]
    love, rest = unseen[:3], unseen[3:6]
    rows = Interactions.from_frame(pl.DataFrame({"user": [user] * 3, "item": love, "rating": [5.0] * 3}))
    child = rt.load(update(saved_mf, rows, tmp_path / "v1"))
    assert (child.predict([user] * 3, love).values > parent.predict([user] * 3, love).values).all()
    finetuned = rt.load(update(saved_mf, rows, tmp_path / "v1ft", epochs=2))
    drift = np.abs(finetuned.predict([user] * 3, rest).values - parent.predict([user] * 3, rest).values)
    assert drift.max() < 0.5  # the replay of the parent's own predictions keeps the rest in place


def test_update_refuses_to_overwrite_its_source(saved_mf, parts):
    with pytest.raises(ValueError, match="new directory"):
        update(saved_mf, parts[1], saved_mf)


@pytest.mark.parametrize("name", ["bias", "pop", "ease", "als", "itemknn"])
def test_other_models_update_and_load(name, parts, tmp_path):
    base, new = parts
    implicit = name not in ("bias",)
    train = to_implicit(base, threshold=4) if implicit else base
    rows = to_implicit(new, threshold=4) if implicit else new
    options = {"als": {"dim": 4, "iterations": 5}, "ease": {"reg": 5.0}, "itemknn": {"neighbours": 5}}.get(name, {})
    model = make_model(name, **options).fit(train)
    model.save(tmp_path / name)
    before = digest(tmp_path / name)
    child = rt.load(update(tmp_path / name, rows, tmp_path / f"{name}-v1"))
    assert digest(tmp_path / name) == before
    assert child.n_users > model.n_users and child.n_items > model.n_items
    scores = child.score(torch.arange(child.n_users))
    assert scores.shape == (child.n_users, child.n_items) and torch.isfinite(scores).all()
    new_user = child.users_.ids[-1]
    assert child.recommend([new_user], k=3).item_idx.shape == (1, 3)
