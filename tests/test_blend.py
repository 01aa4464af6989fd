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


def _small_blend(**options):
    from tests.conftest import planted_ratings

    train = planted_ratings(n_users=30, n_items=20, seed=3)
    params = {"mf": {"dim": 4, "epochs": 2}, "knn_baseline": {"k": 5}}
    return make_model("blend", components=("mf", "knn_baseline"), params=params, **options).fit(train)


def test_support_weights_full_rows_pairs_and_cold_users_agree():
    blend = _small_blend()
    assert blend.support_ is not None and blend.weights_.numel() == 1 + 3 * 2 + 2
    users = torch.tensor([0, 3, 3, 29])
    items = torch.tensor([1, 0, 19, 7])
    full = blend.score(users)
    torch.testing.assert_close(full[torch.arange(4), items], blend.score(users, items))
    # by hand for one pair: (w_c + a_c z_u + b_c z_i) p_c summed, plus the support terms
    w = blend.weights_.tolist()
    zu, zi = blend.support_[0][3], blend.support_[1][19]
    parts = [m.score(users[1:3], items[1:3])[1] for m in blend.members_]
    want = w[0] + sum((w[1 + k] + w[3 + k] * zu + w[5 + k] * zi) * p for k, p in enumerate(parts))
    want = (want + w[7] * zu + w[8] * zi).clamp(*blend.range_)
    torch.testing.assert_close(blend.score(users[2:3], items[2:3])[0], want)
    unknown = blend._fallback(torch.tensor([-1, 3]), torch.tensor([2, -1]))
    assert unknown.shape == (2,) and torch.isfinite(unknown).all()
    assert blend.cold_scores().shape == (blend.n_items,)


def test_without_support_the_weights_are_one_per_component():
    blend = _small_blend(by_support=False)
    assert blend.support_ is None and blend.weights_.numel() == 3


def test_save_load_keeps_the_support_weights_and_reads_older_blends(tmp_path):
    import hashlib
    import json

    from recotorch import artifacts

    for by_support in (True, False):
        blend = _small_blend(by_support=by_support)
        want = blend.score(torch.arange(5))
        path = artifacts.save(blend, tmp_path / f"b{by_support}")
        torch.testing.assert_close(artifacts.load(path).score(torch.arange(5)), want)
    # a blend saved before `by_support` existed: its params lack the field (default True), no support tensors
    folder = tmp_path / "bFalse"
    meta_file = next(folder.rglob("model.json"))
    meta = json.loads(meta_file.read_text())
    del meta["params"]["by_support"]
    meta_file.write_text(json.dumps(meta))
    pointer = folder / "CURRENT"
    current = json.loads(pointer.read_text())
    current["model.json"] = hashlib.sha256(meta_file.read_bytes()).hexdigest()
    pointer.write_text(json.dumps(current))
    old = artifacts.load(folder)
    assert old.by_support is False and old.support_ is None
    torch.testing.assert_close(old.score(torch.arange(5)), want)
