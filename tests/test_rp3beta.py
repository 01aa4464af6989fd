"""RP3beta: links match a hand computation and the dense random-walk definition; files; registry."""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch

from recotorch.artifacts import load, save
from recotorch.data.interactions import Interactions
from recotorch.models import make_model
from recotorch.models.rp3beta import RP3beta

# users 0..3 x items 0..2: deg_u = [2, 3, 1, 1], deg_i = [3, 2, 2]
PAIRS = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 2), (3, 0)]


def _data(pairs=PAIRS) -> Interactions:
    frame = pl.DataFrame({"user": [u for u, _ in pairs], "item": [i for _, i in pairs]})
    return Interactions.from_frame(frame, rating=None, timestamp=None, source="tiny")


def _links(model: RP3beta) -> torch.Tensor:
    order = torch.from_numpy(model.items_.index([0, 1, 2]))
    return model._links(order)[:, order]


def test_links_match_the_hand_computation():
    model = RP3beta(alpha=1.0, beta=0.5, neighbours=2).fit(_data())
    r2, r3 = math.sqrt(2), math.sqrt(3)
    co01, co02, co12 = 1 / 2 + 1 / 3, 1 / 3, 1 / 3  # sum over shared users of 1 / deg_u
    expected = torch.tensor([
        [-math.inf, co01 / (3 * r2), co02 / (3 * r2)],  # row i: / deg_i, column j: / sqrt(deg_j)
        [co01 / (2 * r3), -math.inf, co12 / (2 * r2)],
        [co02 / (2 * r3), co12 / (2 * r2), -math.inf],
    ])
    assert torch.allclose(_links(model), expected)
    # the score of a user is the sum of its items' rows: user 3 (item 0 only) gets row 0
    scores = model.predict([3, 3], [1, 2]).values
    assert scores == pytest.approx([co01 / (3 * r2), co02 / (3 * r2)], rel=1e-5)
    assert model.recommend([2], k=2).item_ids(0) == [1, 0]  # 0.118 > 0.096: beta demotes popular item 0


@pytest.mark.parametrize(("alpha", "beta"), [(1.0, 0.0), (0.7, 0.3), (1.3, 0.8)])
def test_links_match_the_dense_walk(alpha, beta):
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(30, 12, generator=g) < 0.3).float()
    x[torch.arange(12) % 30, torch.arange(12)] = 1.0  # every item and user has a row
    x[torch.arange(30), torch.arange(30) % 12] = 1.0
    pairs = x.nonzero().tolist()
    model = RP3beta(alpha=alpha, beta=beta, neighbours=11).fit(_data([(u, i) for u, i in pairs]))
    p_ui = (x / x.sum(1, keepdim=True)) ** alpha
    p_iu = (x / x.sum(0, keepdim=True)).T ** alpha
    walk = p_iu @ p_ui / x.sum(0)[None, :] ** beta
    walk.fill_diagonal_(-math.inf)
    walk[walk == 0] = -math.inf
    order = torch.from_numpy(model.items_.index(list(range(12))))
    assert torch.allclose(model._links(order)[:, order], walk, rtol=1e-4)


def test_neighbours_keep_the_strongest_links_only():
    model = RP3beta(alpha=1.0, beta=0.5, neighbours=1).fit(_data())
    links = _links(model)
    assert (links > -math.inf).sum(1).tolist() == [1, 1, 1]
    assert links.argmax(1).tolist() == [1, 0, 1]


def test_save_load_and_registry(tmp_path):
    model = make_model("rp3beta", alpha=0.9, beta=0.3, neighbours=2).fit(_data())
    assert isinstance(model, RP3beta)
    back = load(save(model, tmp_path / "rp3"))
    assert isinstance(back, RP3beta) and back.get_params() == model.get_params()
    users = torch.arange(model.n_users)
    assert torch.equal(back.score(users), model.score(users))
    assert back.similar_items([0], k=2).item_ids(0) == model.similar_items([0], k=2).item_ids(0)
    with pytest.raises(ValueError, match="alpha"):
        RP3beta(alpha=0.0).fit(_data())
