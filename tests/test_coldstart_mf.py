"""`ColdStartMF`: MF whose item side is fine-tuned on fold-in episodes."""

from __future__ import annotations

import pytest
import torch

import recotorch as rt
from recotorch.core.maths import ridge_fold_in
from recotorch.evaluate import cold
from recotorch.models import ColdStartMF, make_model
from recotorch.models.coldstart_mf import Episodes
from recotorch.online.foldin import fold_in, fold_in_indices, predict_for_new_user
from tests.conftest import planted_ratings

SMALL = {"dim": 3, "epochs": 10, "batch_size": 256, "lr": 2e-2, "weight_decay": 0.3, "meta_users": 32}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def split() -> cold.UserColdSplit:
    return cold.user_cold_split(planted_ratings(n_users=300, n_items=60, density=0.4, seed=1), frac=0.3, seed=0)


def test_episodic_training_lowers_the_fold_in_error_of_new_users(split):
    warm = ColdStartMF(**SMALL, meta_epochs=0).fit(split.train)
    meta = ColdStartMF(**SMALL, meta_epochs=10, meta_lr=1e-2).fit(split.train)
    rows = cold.user_cold_rating([("warm", warm), ("meta", meta)], split, ks=(1, 3)).rows
    err = {(r["model"], r["k"]): r["RMSE"] for r in rows}
    for k in (1, 3):
        assert err["meta", k] < err["warm", k] - 0.03, err


def test_no_meta_epochs_is_plain_mf(split):
    params = {k: v for k, v in SMALL.items() if k != "meta_users"}
    plain = rt.MatrixFactorization.course(**params).fit(split.train)  # ColdStartMF keeps the course recipe
    warm = ColdStartMF(**params, meta_epochs=0).fit(split.train)
    torch.testing.assert_close(warm.item_vectors(), plain.item_vectors())
    assert warm.fold_in_reg_ == (0.2, 0.3)


def test_episodes_split_each_users_rows_into_support_and_query(split):
    train = split.train.compact()
    episodes = Episodes(train, max_support=4, max_query=1000, support="random")
    users = torch.arange(train.n_users)
    ep = episodes.batch(users, torch.Generator().manual_seed(0))
    k = ep["s_mask"].sum(1)
    assert ((k >= 1) & (k <= 4)).all() and len(set(k.tolist())) > 1
    counts = torch.bincount(train.user_idx, minlength=train.n_users)
    torch.testing.assert_close(k + ep["q_mask"].sum(1), counts)  # every row once, support or query
    csr = train.to_csr()
    for u in (0, 7, 42):  # the items are the user's own, support and query disjoint
        own = set(csr.indices[csr.indptr[u]: csr.indptr[u + 1]].tolist())
        s = set(ep["s_item"][u][ep["s_mask"][u]].tolist())
        q = set(ep["q_item"][u][ep["q_mask"][u]].tolist())
        assert s | q == own and not s & q


def test_time_support_is_the_first_ratings():
    data = planted_ratings(n_users=20, n_items=30, density=0.5, seed=2)  # timestamps follow row order
    train = data.compact()
    ep = Episodes(train, max_support=3, max_query=2, support="time").batch(torch.tensor([0]),
                                                                         torch.Generator().manual_seed(0))
    first = train.item_idx[train.user_idx == 0]
    k = int(ep["s_mask"].sum())
    assert ep["s_item"][0, :k].tolist() == first[:k].tolist()
    assert ep["q_item"][0][ep["q_mask"][0]].tolist() == first[k: k + 2].tolist()


def test_the_training_solve_is_the_fold_in_and_is_differentiable(split):
    model = ColdStartMF(**SMALL, meta_epochs=1).fit(split.train)
    idx = torch.tensor([[0, 3, 5], [1, 2, -1]])
    val = torch.tensor([[5.0, 1.0, 4.0], [2.0, 3.0, 0.0]])
    q = model.module_.item_factors.weight.detach().clone().requires_grad_(True)
    b = model.module_.item_bias.weight.detach().squeeze(1)
    lam = torch.tensor([*[model.fold_in_reg_[0]] * model.dim, model.fold_in_reg_[1]])
    mask = idx >= 0
    model.prior = "population"  # the prior fold-in uses without user features
    mu, var = model._prior_means()
    mine = ridge_fold_in(q, b, idx.clamp(min=0), val * mask, mask.float(), mu[0], lam / var, model.rating_range_)
    torch.testing.assert_close(mine.detach(), fold_in_indices(model, idx, val))
    mine.sum().backward()
    assert q.grad is not None and q.grad[[0, 1, 2, 3, 5]].abs().sum() > 0 and q.grad[4].abs().sum() == 0


def test_learnt_prior_strengths_are_used_and_saved(split, tmp_path):
    model = ColdStartMF(**SMALL, meta_epochs=3, meta_lr=1e-2, learn_reg=True).fit(split.train)
    lam, lam_bias = model.fold_in_reg_
    assert (lam, lam_bias) != (0.2, 0.3)
    items = split.train.items.ids.to_list()[:4]
    ratings = [5.0, 1.0, 4.0, 2.0]
    torch.testing.assert_close(fold_in(model, items, ratings), fold_in(model, items, ratings, reg=lam,
                                                                       reg_bias=lam_bias))
    loaded = rt.load(model.save(tmp_path / "m"))
    assert isinstance(loaded, ColdStartMF) and loaded.fold_in_reg_ == pytest.approx((lam, lam_bias))
    torch.testing.assert_close(fold_in(loaded, items, ratings), fold_in(model, items, ratings))
    assert predict_for_new_user(loaded, items, ratings, items).tolist() == \
        predict_for_new_user(model, items, ratings, items).tolist()
    users = split.train.users.ids.to_list()[:3]
    assert loaded.predict(users, items[:3]).values.tolist() == model.predict(users, items[:3]).values.tolist()


def test_registered_under_its_name():
    model = make_model("mf_coldstart", dim=8, meta_epochs=2)
    assert isinstance(model, ColdStartMF) and model.meta_epochs == 2


def test_meta_training_runs_through_the_trainer_and_resumes_exactly(split, tmp_path, monkeypatch):
    """Meta-training is a second stage of the one `Trainer`: its epochs are checkpointed, and a run
    interrupted mid-way and resumed gives the numbers of an uninterrupted one."""
    params = {**SMALL, "epochs": 2, "meta_epochs": 3, "learn_reg": True}
    whole = ColdStartMF(**params).fit(split.train)
    assert [e.epoch for e in whole.meta_history_.epochs] == [0, 1, 2]
    assert all(e.train_loss > 0 for e in whole.meta_history_.epochs)

    calls, real = {"n": 0}, ColdStartMF._episode_loss
    steps = -(-int((torch.bincount(split.train.user_idx) >= 2).sum()) // SMALL["meta_users"])

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > steps + 1:  # one epoch done (and checkpointed), then the power goes
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ColdStartMF, "_episode_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ColdStartMF(**params).fit(split.train, checkpoint_dir=tmp_path)
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "meta_checkpoint.pt").is_file()
    monkeypatch.setattr(ColdStartMF, "_episode_loss", real)
    resumed = ColdStartMF(**params).fit(split.train, checkpoint_dir=tmp_path, resume=True)
    assert resumed.meta_history_.resumed_from == 1
    torch.testing.assert_close(resumed.item_vectors(), whole.item_vectors(), atol=0, rtol=0)
    assert resumed.fold_in_reg_ == whole.fold_in_reg_
