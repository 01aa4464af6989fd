"""SVD++: the implicit part of the user vector, and its quality against the bias baseline."""

from __future__ import annotations

import pytest
import torch

from recotorch.data import splits
from recotorch.models import make_model
from tests.conftest import planted_ratings

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("scale", [1.0, 0.2])
def test_user_vector_adds_the_normalised_sum_of_the_users_items(scale):
    train = planted_ratings(n_users=20, n_items=15, seed=2)
    model = make_model("svdpp", dim=3, epochs=1, implicit_scale=scale).fit(train)
    net = model.module_
    users = torch.tensor([0, 5, 5, 19])
    got = net.user_vector(users)
    for row, u in enumerate(users.tolist()):
        items = model.seen_.row(u)
        want = net.user_factors.weight[u] + scale * net.implicit.weight[items].sum(0) / len(items) ** 0.5
        torch.testing.assert_close(got[row], want)


def test_a_model_saved_before_implicit_scale_loads_with_the_scale_it_was_fitted_with(tmp_path):
    """Models saved before the field existed summed with scale 1.0; their params lack it (default 0.2)."""
    import hashlib
    import json

    from recotorch import artifacts

    train = planted_ratings(n_users=20, n_items=15, seed=2)
    model = make_model("svdpp", dim=3, epochs=1, implicit_scale=1.0).fit(train)
    want = model.score(torch.arange(5))
    artifacts.save(model, tmp_path / "m")
    meta_files = list((tmp_path / "m").rglob("model.json"))
    assert len(meta_files) == 1
    meta = json.loads(meta_files[0].read_text())
    del meta["params"]["implicit_scale"]
    del meta["extra"]["implicit_scale"]
    meta_files[0].write_text(json.dumps(meta))
    pointer = tmp_path / "m" / "CURRENT"  # the version's checksum, as the older save wrote it
    current = json.loads(pointer.read_text())
    current["model.json"] = hashlib.sha256(meta_files[0].read_bytes()).hexdigest()
    pointer.write_text(json.dumps(current))
    loaded = artifacts.load(tmp_path / "m")
    assert loaded.implicit_scale == 1.0
    torch.testing.assert_close(loaded.score(torch.arange(5)), want)


def test_pairs_and_full_scores_agree_and_beat_the_bias_baseline(ml100k):
    split = splits.random(ml100k, test_frac=0.2, seed=0)
    test = split.test
    users = test.users.ids.to_numpy()[test.user_idx.numpy()]
    items = test.items.ids.to_numpy()[test.item_idx.numpy()]
    rmse = {}
    for name in ("bias", "svdpp"):
        model = make_model(name).fit(split.train)
        pred = torch.from_numpy(model.predict(users, items).values)
        rmse[name] = float(((pred - test.rating.float()) ** 2).mean().sqrt())
    assert rmse["svdpp"] < rmse["bias"] - 0.02, rmse
    rows = torch.arange(4)
    torch.testing.assert_close(model.score(rows)[rows, rows], model.score(rows, rows), atol=1e-5, rtol=1e-5)
