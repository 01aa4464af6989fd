"""`Bagged`: seed bagging of a registered model, its files and its fold-in."""

from __future__ import annotations

import polars as pl
import pytest
import torch

import recotorch as rt
from recotorch.data.interactions import Interactions
from recotorch.evaluate import cold
from recotorch.models import Bagged, make_model
from recotorch.online.foldin import (
    fold_in,
    fold_in_indices,
    new_user_pair_scores,
    new_user_scores,
    predict_for_new_user,
    recommend_for_new_user,
)
from tests.conftest import planted_ratings

SMALL = {"dim": 3, "epochs": 4, "batch_size": 256, "lr": 2e-2, "weight_decay": 0.3}


pytestmark = pytest.mark.usefixtures("one_thread")


def _with_features(data: Interactions) -> Interactions:
    ids = data.users.ids.to_list()
    features = pl.DataFrame({"id": ids, "age": [20 + 7 * (j % 5) for j in range(len(ids))],
                             "gender": ["F" if j % 2 else "M" for j in range(len(ids))],
                             "occupation": ["student" if j % 3 else "writer" for j in range(len(ids))]})
    return data.with_features(user_features=features)


@pytest.fixture(scope="module")
def split() -> cold.UserColdSplit:
    data = _with_features(planted_ratings(n_users=120, n_items=40, density=0.4, seed=3))
    return cold.user_cold_split(data, frac=0.25, seed=0)


@pytest.fixture(scope="module")
def bagged(split) -> Bagged:
    return Bagged(base="mf_coldstart", members=3, seed=5, **SMALL, params={"meta_epochs": 1}).fit(split.train)


def _pairs(model: Bagged) -> tuple[list, list]:
    users = model.users_.ids.to_list()[:7] * 4
    items = model.items_.ids.to_list()[:28]
    return users, items


def test_prediction_is_the_mean_of_the_members(bagged):
    users, items = _pairs(bagged)
    pred = bagged.predict(users, items)
    members = torch.stack([torch.from_numpy(m.predict(users, items).values) for m in bagged.members_])
    assert pred.known.all()
    torch.testing.assert_close(torch.from_numpy(pred.values), members.mean(0))
    rows = torch.arange(4)
    torch.testing.assert_close(bagged.score(rows), torch.stack([m.score(rows) for m in bagged.members_]).mean(0))
    top = bagged.recommend(bagged.users_.ids.to_list()[:2], k=5)
    for row in range(2):  # the averaged scores rank the unseen items
        scores = bagged.score(torch.tensor([row]))[0]
        scores[bagged.seen_.indices[bagged.seen_.indptr[row] : bagged.seen_.indptr[row + 1]]] = -torch.inf
        torch.testing.assert_close(top.scores[row], scores.topk(5).values)


def test_members_are_the_base_with_consecutive_seeds_and_differ(bagged):
    assert [m.seed for m in bagged.members_] == [5, 6, 7]
    assert all(type(m).name == "mf_coldstart" and m.dim == 3 and m.meta_epochs == 1 for m in bagged.members_)
    first, second = (m.item_vectors() for m in bagged.members_[:2])
    assert (first - second).abs().max() > 1e-3
    users, items = _pairs(bagged)
    a, b = (m.predict(users, items).values for m in bagged.members_[:2])
    assert abs(a - b).max() > 1e-3


def test_save_and_load_give_the_same_predictions(bagged, split, tmp_path):
    loaded = rt.load(bagged.save(tmp_path / "bag"))
    assert isinstance(loaded, Bagged) and loaded.get_params() == bagged.get_params()
    assert [m.fold_in_reg_ for m in loaded.members_] == [m.fold_in_reg_ for m in bagged.members_]
    users, items = _pairs(bagged)
    assert (loaded.predict(users, items).values == bagged.predict(users, items).values).all()
    items5 = bagged.items_.ids.to_list()[:5]
    features = {"age": 30, "gender": "F", "occupation": "writer"}
    a, b = (predict_for_new_user(m, items5, [5, 4, 1, 2, 5], items, user_features=features) for m in (bagged, loaded))
    assert (a == b).all()


def test_fold_in_is_the_mean_of_the_members_fold_in(bagged, split):
    items = bagged.items_.ids.to_list()
    history, ratings, targets = items[:4], [5.0, 1.0, 4.0, 2.0], items[4:20]
    for features in (None, {"age": 41, "gender": "M", "occupation": "student"}):
        got = predict_for_new_user(bagged, history, ratings, targets, user_features=features)
        each = [predict_for_new_user(m, history, ratings, targets, user_features=features) for m in bagged.members_]
        torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(sum(each) / len(each)))
    vec = fold_in(bagged, history, ratings)
    parts = [fold_in(m, history, ratings) for m in bagged.members_]
    torch.testing.assert_close(vec, torch.cat(parts))  # the members' representations side by side
    full = new_user_scores(bagged, vec[None])
    torch.testing.assert_close(full, torch.stack([new_user_scores(m, p[None]) for m, p in
                                                  zip(bagged.members_, parts, strict=True)]).mean(0))
    idx = torch.tensor([[0, 3, 9]])
    torch.testing.assert_close(new_user_pair_scores(bagged, vec[None], idx), full[:, [0, 3, 9]])
    recs = recommend_for_new_user(bagged, history, ratings, k=3)
    assert not set(recs.item_ids(0)) & set(history)


def test_the_cold_protocol_folds_in_every_member(bagged, split):
    """`user_cold_rating` on the bagged model equals the RMSE of the members' averaged fold-ins."""
    revealed, rest = cold.reveal_first(split.cold, 3)
    users = torch.unique(rest.user_idx)
    feats = split.cold.user_features[users.numpy()]
    idx, val = cold._padded(revealed, users, bagged)
    vec = fold_in_indices(bagged, idx, val, user_features=feats)
    assert vec.shape == (users.numel(), 3 * (bagged.members_[0].dim + 1))
    whole = cold._folded_scores(bagged, revealed, users, None, None, feats)
    each = torch.stack([cold._folded_scores(m, revealed, users, None, None, feats) for m in bagged.members_])
    torch.testing.assert_close(whole, each.mean(0))


def test_unknown_ids_fall_back_like_the_base(bagged):
    users, items = _pairs(bagged)
    pred = bagged.predict(["nobody", users[0], "nobody"], [items[0], "no-item", "no-item"])
    base = bagged.members_[0].predict(["nobody", users[0], "nobody"], [items[0], "no-item", "no-item"])
    assert not pred.known.any()
    assert (pred.values == base.values).all()
    out = predict_for_new_user(bagged, ["no-item"], [4.0], [items[0], "no-item"])  # no known history
    ref = predict_for_new_user(bagged.members_[0], ["no-item"], [4.0], [items[0], "no-item"])
    torch.testing.assert_close(torch.from_numpy(out), torch.from_numpy(ref))
    with pytest.raises(KeyError):
        bagged.recommend(["nobody"])


def test_make_model_and_bad_options():
    model = make_model("bagged", base="mf", members=2, dim=4, epochs=None)
    assert model.get_params()["dim"] == 4 and model.task == "rating"
    with pytest.raises(ValueError, match="unknown base"):
        Bagged(base="nope")
    with pytest.raises(ValueError, match="members"):
        Bagged(members=0)
    data = planted_ratings(n_users=20, n_items=10, seed=1)
    with pytest.raises(ValueError, match="does not take"):
        Bagged(base="mf", members=1, params={"meta_epochs": 2}).fit(data)  # an option the base lacks
