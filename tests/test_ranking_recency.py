"""Recency-weighted user rows in item-item models (EASE, item-kNN, RP3beta): weights, rankings, files."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from recotorch.artifacts import load, save
from recotorch.data.interactions import Interactions
from recotorch.models import make_model
from recotorch.models.ease import EASE
from recotorch.models.itemknn import ItemKNN, recency_weights
from recotorch.models.rp3beta import RP3beta


def test_recency_weights_halve_every_half_life():
    users = torch.tensor([0, 0, 0, 0, 1, 1])
    times = torch.tensor([40, 10, 30, 20, 5, 5])  # user 1: a tie, broken by row order
    w = recency_weights(users, times, half_life=1.0, unit="steps")
    assert torch.allclose(w, torch.tensor([1.0, 0.125, 0.5, 0.25, 0.5, 1.0]))
    w = recency_weights(users, times, half_life=0.5, unit="fraction")  # h = 0.5 x 4 rows = 2 steps
    assert torch.allclose(w[:4], torch.tensor([1.0, 0.5**1.5, 0.5**0.5, 0.5]))
    with pytest.raises(ValueError, match="half_life"):
        recency_weights(users, times, half_life=0.0)


def _two_tastes() -> Interactions:
    """Items a0..a2 and b0..b2 form two tastes; user 1 liked the a's long ago and b0, b1 lately."""
    rows = [(u, f"a{k}", 0) for u in range(10, 20) for k in range(3)]
    rows += [(u, f"b{k}", 0) for u in range(20, 30) for k in range(3)]
    rows += [(1, "a0", 1), (1, "a1", 2), (1, "b0", 3), (1, "b1", 4)]
    frame = pl.DataFrame({"user": [r[0] for r in rows], "item": [r[1] for r in rows],
                          "timestamp": [r[2] for r in rows]})
    return Interactions.from_frame(frame, rating=None, timestamp="timestamp", source="tastes")


def _top(model, user: int = 1) -> str:
    return model.recommend([user], k=1).item_ids(0)[0]


@pytest.mark.parametrize("factory", [
    lambda h: EASE(reg=1.0, half_life=h, half_life_unit="steps"),
    lambda h: ItemKNN(neighbours=5, half_life=h, half_life_unit="steps"),
    lambda h: RP3beta(alpha=1.0, beta=0.0, neighbours=5, half_life=h, half_life_unit="steps"),
])
def test_recent_taste_wins_the_tie(factory):
    data = _two_tastes()
    uniform = factory(None).fit(data)
    recent = factory(0.5).fit(data)
    s_uni = uniform.predict([1, 1], ["a2", "b2"]).values
    s_rec = recent.predict([1, 1], ["a2", "b2"]).values
    assert s_uni[0] == pytest.approx(s_uni[1], rel=1e-5)  # symmetric history: a tie without recency
    assert s_rec[1] > s_rec[0] * 1.5  # the latest items pull their own taste ahead
    assert _top(recent) == "b2"


def test_history_rows_and_missing_timestamps():
    data = _two_tastes()
    model = EASE(reg=1.0, half_life=1.0, half_life_unit="steps").fit(data)
    idx = torch.from_numpy(model.items_.index(["a0", "b0", "b1"]))
    rows = model.history_rows(torch.stack([idx, torch.tensor([idx[0], -1, -1])]), torch.tensor([[1, 2, 3], [7, 0, 0]]))
    assert torch.allclose(rows[0, idx], torch.tensor([0.25, 0.5, 1.0])) and rows[0].sum() == pytest.approx(1.75)
    assert rows[1, idx[0]] == 1.0 and rows[1].sum() == 1.0
    assert torch.equal(model.history_rows(idx[None]), (rows > 0).float()[:1])  # no order: 0/1 row
    # a training user's own history, given in time, reproduces its training row
    profile = model.user_rows(torch.tensor([int(model.users_.index([1])[0])])).to_dense()
    hist = torch.from_numpy(model.items_.index(["a0", "a1", "b0", "b1"]))
    assert torch.allclose(model.history_rows(hist[None], torch.arange(4)[None]), profile)
    no_time = Interactions.from_frame(data.to_frame().drop("timestamp"), rating=None, timestamp=None)
    with pytest.raises(ValueError, match="timestamps"):
        EASE(half_life=0.25).fit(no_time)
    EASE(reg=1.0).fit(no_time)  # without half_life timestamps are not needed


@pytest.mark.parametrize("name", ["ease", "itemknn", "rp3beta"])
def test_recency_profile_survives_save_and_load(tmp_path, name):
    model = make_model(name, half_life=0.5, half_life_unit="steps").fit(_two_tastes())
    back = load(save(model, tmp_path / name))
    assert back.half_life == 0.5 and back.profile_ is not None
    users = torch.arange(model.n_users)
    assert torch.allclose(back.score(users), model.score(users))
    plain = make_model(name).fit(_two_tastes())
    assert load(save(plain, tmp_path / f"{name}-plain")).profile_ is None
    assert not torch.allclose(plain.score(users), model.score(users))


def test_items_added_after_fitting_count_as_latest():
    model = EASE(reg=1.0, half_life=0.5, half_life_unit="steps").fit(_two_tastes())
    u = int(model.users_.index([1])[0])
    before = model.user_rows(torch.tensor([u])).to_dense()[0]
    a2 = int(model.items_.index(["a2"])[0])
    seen, end = model.seen_, int(model.seen_.indptr[u + 1])
    indices = torch.cat([seen.indices[:end], torch.tensor([a2]), seen.indices[end:]])
    indptr = seen.indptr.clone()
    indptr[u + 1:] += 1
    model.seen_ = type(seen)(indptr, indices)  # what an incremental update does to the seen sets
    after = model.user_rows(torch.tensor([u])).to_dense()[0]
    assert after[a2] == 1.0 and before[a2] == 0.0
    assert torch.equal(torch.cat([after[:a2], after[a2 + 1:]]), torch.cat([before[:a2], before[a2 + 1:]]))
