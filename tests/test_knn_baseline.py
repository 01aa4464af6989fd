"""KNNBaseline: the vectorised model against a direct reading of its formula, and against the bias baseline."""

from __future__ import annotations

import math

import pytest
import torch

from recotorch.data import splits
from recotorch.models import make_model
from tests.conftest import planted_ratings

pytestmark = pytest.mark.usefixtures("one_thread")


def _reference(train, model, u: int, i: int) -> float:
    """The formula of the module docstring, one pair at a time, with plain Python loops."""
    r = {(int(a), int(b)): float(c) for a, b, c in zip(train.user_idx, train.item_idx, train.rating, strict=True)}
    mean, bu, bi = model.mean_, model.user_bias_, model.item_bias_

    def e(a: int, b: int) -> float:
        return r[a, b] - mean - float(bu[a]) - float(bi[b])

    def sim(x: int, y: int) -> float:
        common = [a for a in range(train.n_users) if (a, x) in r and (a, y) in r]
        if not common:
            return 0.0
        num = sum(e(a, x) * e(a, y) for a in common)
        den = math.sqrt(sum(e(a, x) ** 2 for a in common) * sum(e(a, y) ** 2 for a in common))
        n = len(common)
        return (n - 1) / (n - 1 + model.shrinkage) * num / den if den > 0 else 0.0

    rated = [j for j in range(train.n_items) if (u, j) in r and j != i]
    near = sorted(((sim(i, j), j) for j in rated), reverse=True)[: model.k]
    near = [(s, j) for s, j in near if s > 0]
    base = mean + float(bu[u]) + float(bi[i])
    if len(near) < model.min_k:
        return base
    return base + sum(s * e(u, j) for s, j in near) / sum(s for s, _ in near)


def test_matches_the_formula_when_every_neighbour_is_kept():
    train = planted_ratings(n_users=25, n_items=12, seed=3)
    model = make_model("knn_baseline", k=4, shrinkage=5.0, neighbours=100).fit(train)
    lo, hi = model.range_
    g = torch.Generator().manual_seed(0)
    users, items = torch.randint(0, 25, (30,), generator=g), torch.randint(0, 12, (30,), generator=g)
    got = model.score(users, items)
    want = torch.tensor([min(hi, max(lo, _reference(train, model, int(u), int(i))))
                         for u, i in zip(users, items, strict=True)])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(model.score(users)[torch.arange(30), items], got, atol=1e-5, rtol=1e-5)


def test_neighbours_bound_the_stored_links():
    train = planted_ratings(n_users=30, n_items=20, seed=4)
    model = make_model("knn_baseline", neighbours=3).fit(train)
    assert model.nbr_idx_.shape == (20, 3)
    assert (model.nbr_sim_ >= 0).all()


def test_beats_the_bias_baseline_on_movielens(ml100k):
    split = splits.random(ml100k, test_frac=0.2, seed=0)
    test = split.test
    rmse = {}
    for name in ("bias", "knn_baseline"):
        model = make_model(name).fit(split.train)
        pred = model.predict(test.users.ids.to_numpy()[test.user_idx.numpy()],
                             test.items.ids.to_numpy()[test.item_idx.numpy()]).values
        rmse[name] = float(((torch.from_numpy(pred) - test.rating.float()) ** 2).mean().sqrt())
    assert rmse["knn_baseline"] < rmse["bias"] - 0.01, rmse
