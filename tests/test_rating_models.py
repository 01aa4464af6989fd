"""The shared contract every rating model meets, run for each of them on planted data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import recotorch as rt
from recotorch.data.interactions import Interactions
from tests.conftest import planted_ratings

FACTORIES = {
    "mean": lambda: rt.GlobalMean(),
    "bias": lambda: rt.BiasBaseline(),
    "mf": lambda: rt.MatrixFactorization(dim=8, epochs=40, batch_size=256, lr=2e-2, weight_decay=0.05),
    "ncf": lambda: rt.NeuralCF(user_dim=8, item_dim=8, layers=(64,), epochs=60, batch_size=128, lr=3e-2,
                               dropout=0.0, weight_decay=0.1),
}


def _split(data: Interactions, seed: int = 1) -> tuple[Interactions, Interactions]:
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(data))
    return data.subset(perm[:cut]), data.subset(perm[cut:])


def _rmse(model: rt.Estimator, test: Interactions) -> float:
    frame = test.to_frame()
    pred = model.predict(frame["user"], frame["item"])
    return float(np.sqrt(np.mean((pred.values - frame["rating"].to_numpy()) ** 2)))


@pytest.fixture(scope="module")
def fitted() -> dict[str, tuple[rt.Estimator, Interactions, Interactions]]:
    train, test = _split(planted_ratings())
    return {name: (make().fit(train), train, test) for name, make in FACTORIES.items()}


def test_latent_models_recover_planted_structure(fitted):
    """MF and NCF must beat the bias baseline clearly on data with planted low-rank structure."""
    bias = _rmse(*fitted["bias"][::2])
    assert _rmse(*fitted["mean"][::2]) > bias
    for name in ("mf", "ncf"):
        model, _, test = fitted[name]
        assert _rmse(model, test) < 0.9 * bias, name


@pytest.mark.parametrize("name", list(FACTORIES))
def test_pair_scores_match_full_catalogue_scores(fitted, name):
    model = fitted[name][0]
    users = torch.tensor([0, 3, 7])
    full = model.score(users)  # (3, n_items)
    items = torch.tensor([0, 5, 11])
    assert full.shape == (3, model.n_items)
    torch.testing.assert_close(model.score(users, items), full[torch.arange(3), items], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_save_load_round_trip(fitted, name, tmp_path):
    model, _, test = fitted[name]
    frame = test.to_frame()
    model.save(tmp_path / name)
    again = rt.load(tmp_path / name)
    assert type(again) is type(model) and again.get_params() == model.get_params()
    np.testing.assert_allclose(again.predict(frame["user"], frame["item"]).values,
                               model.predict(frame["user"], frame["item"]).values, rtol=1e-6)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_unknown_ids_get_the_baseline_and_are_flagged(fitted, name):
    model, train, _ = fitted[name]
    known_user = train.users.ids[int(train.user_idx[0])]
    known_item = train.items.ids[int(train.item_idx[0])]
    pred = model.predict([known_user, -5, -5], [known_item, known_item, "nope"])
    assert pred.known.tolist() == [True, False, False]
    assert pred.n_fallback == 2
    assert np.isfinite(pred.values).all()
    ratings = train.rating.numpy()
    # an unknown user on a known item still gets that item's baseline: within the rating range
    assert ratings.min() - 1 <= pred.values[1] <= ratings.max() + 1
    assert abs(pred.values[2] - ratings.mean()) < 1.0  # both unknown: near the global mean


@pytest.mark.parametrize("name", list(FACTORIES))
def test_recommend_excludes_seen_items_and_never_repeats(fitted, name):
    model, train, _ = fitted[name]
    users = train.users.ids.head(10).to_list()
    recs = model.recommend(users, k=15)
    seen = model.seen_
    for row, user in enumerate(users):
        items = recs.item_idx[row]
        items = items[items >= 0]
        assert len(set(items.tolist())) == items.numel()
        u = int(model.users_.index([user])[0])
        assert not set(items.tolist()) & set(seen.row(u).tolist())
    with pytest.raises(KeyError, match="unknown user"):
        model.recommend(["nobody"], k=5)


def test_mf_is_reproducible_and_leaves_global_rng_alone(planted):
    state = torch.random.get_rng_state()
    a = rt.MatrixFactorization(dim=4, epochs=2, seed=3).fit(planted)
    assert torch.equal(state, torch.random.get_rng_state())
    b = rt.MatrixFactorization(dim=4, epochs=2, seed=3).fit(planted)
    c = rt.MatrixFactorization(dim=4, epochs=2, seed=4).fit(planted)
    assert torch.equal(a.item_vectors(), b.item_vectors())
    assert not torch.equal(a.item_vectors(), c.item_vectors())


def test_rating_models_refuse_data_without_ratings(planted):
    from dataclasses import replace

    with pytest.raises(ValueError, match="ratings"):
        rt.MatrixFactorization(epochs=1).fit(replace(planted, rating=None))


@pytest.mark.parametrize(("model", "bar"), [(rt.MatrixFactorization, 0.912), (rt.NeuralCF, 0.930)])
def test_default_models_on_ml100k_meet_the_bars(ml100k, model, bar):
    """The issue's bars: default settings, random 80/20 of all ratings (seed 0)."""
    from recotorch.data import splits

    split = splits.random(ml100k, test_frac=0.2, seed=0)
    assert _rmse(model().fit(split.train), split.test) <= bar
