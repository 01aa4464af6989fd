"""Fold-in priors of rating factor models: separate factor/bias strengths, rating weights, demographics."""

from __future__ import annotations

import polars as pl
import pytest
import torch

import recotorch as rt
from recotorch.data.demographics import demographic_design
from recotorch.data.interactions import Interactions
from recotorch.evaluate import cold
from recotorch.online.foldin import fold_in, fold_in_indices, predict_for_new_user
from tests.conftest import planted_ratings

pytestmark = pytest.mark.usefixtures("one_thread")


def _hand_model() -> rt.MatrixFactorization:
    """dim 1, no sigmoid; user a (3 ratings) p=1, b=0.5; user b (1 rating) p=-1, b=-0.5; item x q=2, b=1."""
    frame = pl.DataFrame({"user": ["a", "a", "a", "b"], "item": ["x", "y", "z", "x"],
                          "rating": [4.0, 3.0, 2.0, 1.0], "timestamp": [0, 1, 2, 3]})
    model = rt.MatrixFactorization(dim=1, rating_range=None, epochs=1).fit(Interactions.from_frame(frame))
    m, u, i = model.module_, model.users_.index(["a", "b"]), model.items_.index(["x"])[0]
    with torch.no_grad():
        m.user_factors.weight[u[0]], m.user_factors.weight[u[1]] = 1.0, -1.0
        m.user_bias.weight[u[0]], m.user_bias.weight[u[1]] = 0.5, -0.5
        m.item_factors.weight[i], m.item_bias.weight[i] = 2.0, 1.0
    return model


def test_hand_computed_fold_in_with_separate_factor_and_bias_priors():
    """Rating-weighted prior: mean p 0.5 (var 0.75), mean b 0.25 (var 0.1875). One rating 4 of x, z = 3:
    [[4 + 1, 2], [2, 1 + 1]] [p, b] = [6 + 0.5, 3 + 0.25] -> p = 6.5 / 6, b = 3.25 / 6."""
    model = _hand_model()
    vec = fold_in(model, ["x"], [4.0], reg=0.75, reg_bias=0.1875)
    torch.testing.assert_close(vec, torch.tensor([6.5 / 6, 3.25 / 6]))
    pred = predict_for_new_user(model, ["x"], [4.0], ["x"], reg=0.75)  # reg_bias follows reg: 4 on the bias
    # gram [[5, 2], [2, 1 + 4]], rhs [6.5, 3 + 1]: p = (5 * 6.5 - 2 * 4) / 21, b = (5 * 4 - 2 * 6.5) / 21
    p, b = (5 * 6.5 - 2 * 4) / 21, (5 * 4 - 2 * 6.5) / 21
    assert pred[0] == pytest.approx(2 * p + b + 1, abs=1e-5)


def test_bias_prior_alone_can_pin_the_bias():
    model = _hand_model()
    vec = fold_in(model, ["x"], [4.0], reg=1e-6, reg_bias=1e9)
    assert vec[1] == pytest.approx(0.25, abs=1e-5)  # the rating-weighted mean bias, not the plain mean 0
    assert vec[0] == pytest.approx((3 - 0.25) / 2, abs=1e-3)  # the factor explains the rest: 2 p = z - b


def _with_groups(data: Interactions, shift: float = 1.0) -> tuple[Interactions, dict]:
    """Shift the ratings of "F" users up and "M" users down; attach age/gender/occupation."""
    ids = data.users.ids.to_list()
    female = {u for j, u in enumerate(ids) if j % 2 == 0}
    frame = data.to_frame()
    up = pl.col("user").is_in(list(female))
    frame = frame.with_columns(pl.when(up).then(pl.col("rating") + shift).otherwise(pl.col("rating") - shift)
                               .clip(1, 5).alias("rating"))
    features = pl.DataFrame({"id": ids, "age": [20 + 5 * (j % 6) for j in range(len(ids))],
                             "gender": ["F" if u in female else "M" for u in ids],
                             "occupation": ["student" if j % 3 else "writer" for j in range(len(ids))]})
    return Interactions.from_frame(frame).with_features(user_features=features), {u: u in female for u in ids}


@pytest.fixture(scope="module")
def grouped() -> tuple[Interactions, rt.MatrixFactorization]:
    data, _ = _with_groups(planted_ratings(n_users=160, n_items=40, density=0.5))
    model = rt.MatrixFactorization(dim=4, epochs=30, batch_size=256, lr=2e-2, weight_decay=0.05).fit(data)
    return data, model


def test_demographic_prior_moves_a_new_user_towards_their_group(grouped):
    data, model = grouped
    items = data.items.ids.to_list()
    female = predict_for_new_user(model, items[:1], [3.0], items[1:], user_features={"gender": "F", "age": 30})
    male = predict_for_new_user(model, items[:1], [3.0], items[1:], user_features={"gender": "M", "age": 30})
    plain = predict_for_new_user(model, items[:1], [3.0], items[1:])
    assert female.mean() > plain.mean() + 0.15 > male.mean() + 0.3
    unknown = predict_for_new_user(model, items[:1], [3.0], items[1:], user_features={"gender": "X"})
    assert abs(unknown.mean() - plain.mean()) < 0.15  # an unseen level is the population average


def test_folded_in_predictions_move_towards_the_revealed_ratings(grouped):
    data, model = grouped
    items = data.items.ids.to_list()[:6]
    prior = predict_for_new_user(model, items[:1], [3.0], items, reg=1e9)  # ~ the average user
    loves = predict_for_new_user(model, items, [5.0] * 6, items, user_features={"gender": "M"})
    hates = predict_for_new_user(model, items, [1.0] * 6, items, user_features={"gender": "F"})
    assert (loves > prior).all() and (hates < prior).all()


def test_features_are_ignored_without_a_feature_trained_model(grouped):
    data, _ = grouped
    bare = Interactions.from_frame(data.to_frame())  # no user features
    model = rt.MatrixFactorization(dim=4, epochs=2).fit(bare)
    items = bare.items.ids.to_list()[:3]
    torch.testing.assert_close(fold_in(model, items, [5.0, 1.0, 3.0], user_features={"gender": "F"}),
                               fold_in(model, items, [5.0, 1.0, 3.0]))


def test_demographic_prior_survives_save_and_load(grouped, tmp_path):
    data, model = grouped
    items = data.items.ids.to_list()[:3]
    features = {"age": 41, "gender": "F", "occupation": "writer"}
    before = fold_in(model, items, [5.0, 1.0, 3.0], user_features=features)
    loaded = rt.load(model.save(tmp_path / "m"))
    torch.testing.assert_close(fold_in(loaded, items, [5.0, 1.0, 3.0], user_features=features), before)
    assert not torch.allclose(before, fold_in(loaded, items, [5.0, 1.0, 3.0]))


def test_batched_features_must_match_the_batch(grouped):
    data, model = grouped
    idx = torch.tensor([[0, 1], [2, -1]])
    val = torch.tensor([[5.0, 4.0], [1.0, 0.0]])
    rows = data.user_features[:2]
    out = fold_in_indices(model, idx, val, user_features=rows)
    assert out.shape == (2, model.dim + 1)
    with pytest.raises(ValueError, match="rows of user features"):
        fold_in_indices(model, idx, val, user_features=data.user_features[:3])


def test_demographic_design_one_hot_by_age_band():
    frame = pl.DataFrame({"age": [17, 30, None], "gender": ["F", "M", "F"]})
    g, levels = demographic_design(frame)
    assert levels == [("age", "25-34"), ("age", "<18"), ("gender", "F"), ("gender", "M")]
    assert g.tolist() == [[0, 1, 1, 0], [1, 0, 0, 1], [0, 0, 1, 0]]
    g2, _ = demographic_design(pl.DataFrame({"gender": ["M"]}), levels)
    assert g2.tolist() == [[0, 0, 0, 1]]


def test_user_cold_rating_with_a_feature_prior(grouped):
    data, _ = grouped
    split = cold.user_cold_split(data, frac=0.25, seed=0)
    mf = rt.MatrixFactorization.course(dim=4, epochs=30, batch_size=256, lr=2e-2, weight_decay=0.05).fit(split.train)
    bias = rt.BiasBaseline().fit(split.train)
    report = cold.user_cold_rating([("mf", mf), ("mf + features", mf)], split, ks=(1,), item_bias=bias,
                                   feature_prior={"mf + features"})
    rmse = {r["model"]: r["RMSE"] for r in report.rows}
    assert rmse["mf + features"] < rmse["mf"] - 0.1  # one rating says little; the gender says +-1 star
    bare = cold.UserColdSplit(split.train, split.cold.with_features(user_features=None))
    object.__setattr__(bare.cold, "user_features", None)
    with pytest.raises(ValueError, match="no features"):
        cold.user_cold_rating([("mf", mf)], bare, ks=(1,), feature_prior={"mf"})
