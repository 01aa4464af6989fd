"""Fold-in of new users: closed-form solves against frozen item sides, and answers for empty histories."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

import recotorch as rt
from recotorch.data.demographics import age_band
from recotorch.data.interactions import Interactions
from recotorch.models.als import ImplicitALS
from recotorch.models.ease import EASE
from recotorch.models.popularity import MostPopular
from recotorch.online.foldin import (
    cold_scores,
    fold_in,
    fold_in_indices,
    new_user_scores,
    predict_for_new_user,
    recommend_for_new_user,
)
from recotorch.online.popularity import demographic_popularity
from tests.conftest import digest, planted_ratings

pytestmark = pytest.mark.usefixtures("one_thread")

@pytest.fixture(scope="module")
def planted() -> Interactions:
    return planted_ratings(n_users=120, n_items=60, density=0.6)

@pytest.fixture(scope="module")
def mf(planted: Interactions) -> rt.MatrixFactorization:
    return rt.MatrixFactorization(dim=8, epochs=40, batch_size=256, lr=2e-2, weight_decay=0.05).fit(planted)

def _history(data: Interactions, user_idx: int) -> tuple[list, list]:
    frame = data.to_frame()
    rows = frame.filter(pl.col("user") == data.users.ids[user_idx])
    return rows["item"].to_list(), rows["rating"].to_list()

def test_folding_in_a_training_user_recovers_its_predictions(planted, mf):
    """The closed-form vector of a user's own ratings predicts like the vector training learnt."""
    corrs = []
    for user in range(5):
        items, ratings = _history(planted, user)
        vec = fold_in(mf, items, ratings)
        assert vec.shape == (mf.dim + 1,)
        u = int(mf.users_.index([planted.users.ids[user]])[0])
        folded, trained = new_user_scores(mf, vec[None])[0], mf.score(torch.tensor([u]))[0]
        corrs.append(np.corrcoef(folded.numpy(), trained.numpy())[0, 1])
    assert min(corrs) > 0.9, corrs

def test_fold_in_beats_the_item_mean_for_a_held_out_user(planted):
    """A user absent from training, folded in from half their ratings, is predicted better than by item biases."""
    frame = planted.to_frame()
    held = planted.users.ids[:20].to_list()
    train = Interactions.from_frame(frame.filter(~pl.col("user").is_in(held)))
    model = rt.MatrixFactorization(dim=8, epochs=40, batch_size=256, lr=2e-2, weight_decay=0.05).fit(train)
    errors_fold, errors_bias = [], []
    for user in held:
        rows = frame.filter(pl.col("user") == user)
        half = len(rows) // 2
        given, target = rows.head(half), rows.tail(len(rows) - half)
        pred = predict_for_new_user(model, given["item"], given["rating"], target["item"])
        base = predict_for_new_user(model, [], None, target["item"])  # empty history: mean + item bias
        errors_fold.append((pred - target["rating"].to_numpy()) ** 2)
        errors_bias.append((base - target["rating"].to_numpy()) ** 2)
    assert np.sqrt(np.concatenate(errors_fold).mean()) < 0.85 * np.sqrt(np.concatenate(errors_bias).mean())

def test_strong_prior_returns_the_average_user(mf, planted):
    items, ratings = _history(planted, 0)
    vec = fold_in(mf, items, ratings, reg=1e9)
    x = torch.cat([mf.user_vectors(), mf.module_.user_bias.weight.detach()], 1)
    weights = mf.seen_.row_lengths().float()
    mean = weights @ x / weights.sum()  # each trained user counts by their number of ratings
    torch.testing.assert_close(vec, mean, atol=1e-4, rtol=1e-4)

def test_batched_fold_in_matches_single(mf, planted):
    a, b = _history(planted, 0), _history(planted, 1)
    single = torch.stack([fold_in(mf, *a), fold_in(mf, *b)])
    width = max(len(a[0]), len(b[0]))
    idx = torch.full((2, width), -1)
    val = torch.zeros(2, width)
    for row, (items, ratings) in enumerate((a, b)):
        idx[row, : len(items)] = torch.from_numpy(mf.items_.index(items))
        val[row, : len(items)] = torch.tensor(ratings)
    torch.testing.assert_close(fold_in_indices(mf, idx, val), single, atol=1e-4, rtol=1e-4)

def test_recommend_and_predict_for_new_user(mf, planted):
    items, ratings = _history(planted, 0)
    recs = recommend_for_new_user(mf, items[:5], ratings[:5], k=8)
    ids = recs.item_ids(0)
    assert len(ids) == 8 and not set(ids) & set(items[:5])
    kept = recommend_for_new_user(mf, items[:5], ratings[:5], k=mf.n_items, exclude_rated=False).item_ids(0)
    assert set(items[:5]) <= set(kept)
    pred = predict_for_new_user(mf, items[:5], ratings[:5], [items[6], "no-such-item"])
    assert pred.shape == (2,) and pred.dtype == np.float32
    assert pred[1] == pytest.approx(mf.baseline_[0], abs=1e-5)  # unknown item: the global mean
    with pytest.raises(ValueError, match="ratings"):
        fold_in(mf, items[:3])
    with pytest.raises(ValueError, match="ratings"):
        predict_for_new_user(mf, items[:3], [5.0], items[:1])

def test_empty_history_is_the_bias_adjusted_item_mean(mf):
    recs = recommend_for_new_user(mf, [], None, k=3)
    item_bias = mf.baseline_[2]
    assert recs.item_idx[0].tolist() == torch.argsort(item_bias, descending=True, stable=True)[:3].tolist()
    assert recommend_for_new_user(mf, ["unknown"], [5.0], k=3).item_idx[0].tolist() == recs.item_idx[0].tolist()

def _implicit_blocks() -> Interactions:
    """Two blocks: users 0-19 like items 0-9, users 20-39 like items 10-19; item 0 and 10 most popular."""
    users, items = [], []
    for u in range(40):
        block = u // 20
        for j in range(10):
            if (u + j) % 3 or j == 0:
                users.append(u)
                items.append(block * 10 + j)
    frame = pl.DataFrame({"user": users, "item": items, "rating": [1.0] * len(users)})
    ages = [22 if u < 20 else 60 for u in range(40)]
    features = pl.DataFrame({"id": list(range(40)), "age": ages, "gender": ["F" if u < 20 else "M" for u in range(40)],
                             "occupation": ["student" if u < 20 else "retired" for u in range(40)]})
    return Interactions.from_frame(frame).with_features(user_features=features)

def test_ease_fold_in_of_a_training_user_is_its_own_score():
    data = _implicit_blocks()
    model = EASE(reg=5.0, own_weight=0.0).fit(data)  # folded-in rows are scored without own_weight
    items = model.items_.lookup(model.seen_.row(3).numpy())
    vec = fold_in(model, items, reg=0.0)
    torch.testing.assert_close(new_user_scores(model, vec[None])[0], model.score(torch.tensor([3]))[0])

def test_item_item_prior_leans_on_popularity_but_keeps_the_users_block():
    model = EASE(reg=5.0, own_weight=0.0).fit(_implicit_blocks())  # own_weight would mix item 11's own weight in
    top = recommend_for_new_user(model, [11], k=3).item_ids(0)  # one block-2 item
    assert all(10 <= i < 20 for i in top), top
    alone = new_user_scores(model, fold_in(model, [11], reg=0.0)[None])[0]  # no prior: item 11's row of W
    torch.testing.assert_close(alone, model.weights_[int(model.items_.index([11])[0])])

def test_als_fold_in_is_close_to_the_trained_user_vector():
    data = _implicit_blocks()
    model = ImplicitALS(dim=4, reg=1.0, alpha=5.0, iterations=15).fit(data)
    items = model.items_.lookup(model.seen_.row(5).numpy())
    vec = fold_in(model, items)
    trained = model.user_factors_[5]
    assert torch.nn.functional.cosine_similarity(vec, trained, dim=0) > 0.99

def test_demographic_popularity_prefers_the_users_group():
    model = MostPopular().fit(_implicit_blocks())
    young = demographic_popularity(model, {"age": 23, "gender": "F", "occupation": "student"})
    old = cold_scores(model, {"age": 70, "gender": "M", "occupation": "retired"})
    assert int(young.argmax()) < 10 <= int(old.argmax())
    assert demographic_popularity(model, {"age": 23, "gender": "F", "occupation": "student"}, min_users=1000) is None
    plain = cold_scores(model)  # no features: global popularity
    torch.testing.assert_close(plain, model.popularity_)
    assert age_band(17) == "<18" and age_band(18) == "18-24" and age_band(60) == "56+"

def test_fold_in_never_touches_the_saved_model(mf, planted, tmp_path):
    mf.save(tmp_path / "m")
    before = digest(tmp_path / "m")
    loaded = rt.load(tmp_path / "m")
    items, ratings = _history(planted, 2)
    recommend_for_new_user(loaded, items, ratings)
    predict_for_new_user(loaded, items, ratings, items)
    assert digest(tmp_path / "m") == before
    assert loaded.n_users == mf.n_users
