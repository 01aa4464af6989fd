"""Blend: ridge weights learnt on held-out rows; better than each of its components on ml-100k."""

from __future__ import annotations

import pytest
import torch

from recotorch.data import splits
from recotorch.errors import OptionError
from recotorch.models import make_model
from recotorch.models.blend import _ridge_weights

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ridge_weights_recover_a_linear_combination():
    g = torch.Generator().manual_seed(0)
    preds = torch.randn(500, 3, generator=g, dtype=torch.float64)
    target = 0.5 + preds @ torch.tensor([0.2, 0.7, -0.1], dtype=torch.float64)
    w = _ridge_weights(preds, target, reg=0.0)
    torch.testing.assert_close(w, torch.tensor([0.5, 0.2, 0.7, -0.1], dtype=torch.float64))
    shrunk = _ridge_weights(preds, target, reg=10.0)
    assert shrunk[1:].abs().sum() < w[1:].abs().sum()


@pytest.mark.parametrize(("options", "option"), [({"components": ("mf", "als")}, "components"),
                                                 ({"components": ()}, "components"),
                                                 ({"components": ("mf",), "params": {"svdpp": {}}}, "params")])
def test_refuses_components_it_cannot_blend(options, option):
    with pytest.raises(OptionError) as err:
        make_model("blend", **options)
    assert err.value.option == option


def _rmse(model, test) -> float:
    users = test.users.ids.to_numpy()[test.user_idx.numpy()]
    items = test.items.ids.to_numpy()[test.item_idx.numpy()]
    pred = torch.from_numpy(model.predict(users, items).values)
    return float(((pred - test.rating.float()) ** 2).mean().sqrt())


def test_blend_beats_each_component_on_movielens(ml100k):
    split = splits.random(ml100k, test_frac=0.2, seed=0)
    components = ("mf", "knn_baseline")
    rmse = {name: _rmse(make_model(name).fit(split.train), split.test) for name in components}
    blend = make_model("blend", components=components).fit(split.train)
    assert _rmse(blend, split.test) < min(rmse.values()) - 0.003, (rmse, blend.blend_weights())
    assert set(blend.blend_weights()) == {"intercept", *components}
