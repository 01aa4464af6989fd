"""The compiled BPR / BCE step (`train.ranking_kernel`): the same update as the tensor path, true negatives,
and the same quality from a fit; which path a ranking model takes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import torch

import recotorch as rt
from recotorch.core.device import seeded
from recotorch.data.interactions import Interactions
from recotorch.data.sampling import NegativeSampler
from recotorch.evaluate.ranking import ranking_metrics_for, ranking_split
from recotorch.train import ranking_kernel
from recotorch.train.optimizers import RowWiseAdagrad

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not ranking_kernel.available(), reason="Numba is not installed")]


def _frame(users: torch.Tensor, items: torch.Tensor, **columns: torch.Tensor) -> Interactions:
    return Interactions.from_frame(pl.DataFrame({"user": users.numpy(), "item": items.numpy(),
                                                 **{k: v.numpy() for k, v in columns.items()}}))


def _positives(n_users: int = 60, n_items: int = 40, per_user: int = 8, seed: int = 0) -> Interactions:
    """Each user `per_user` distinct random items (ids = indices, every id present)."""
    g = torch.Generator().manual_seed(seed)
    users = torch.arange(n_users).repeat_interleave(per_user)
    items = torch.stack([torch.randperm(n_items, generator=g)[:per_user] for _ in range(n_users)]).flatten()
    return _frame(users, items)


@pytest.mark.parametrize("loss", ["bpr", "bce"])
def test_one_compiled_step_is_the_tensor_paths_update(loss):
    """Given the same negatives, the kernel's step equals autograd on `_batch_loss` + `RowWiseAdagrad`."""
    train = _positives()
    model = rt.make_model(loss, dim=6, n_neg=3, optimizer="rowwise_adagrad", weight_decay=0.3, init_std=0.3)
    model._prepare(train)
    with seeded(1):
        model.module_ = model._build_module(train.n_users, train.n_items)
    data = model._training_tensors(train)
    rows = torch.arange(0, data["user_idx"].numel(), 2)[:50]
    negatives = model._negatives.sample(data["user_idx"][rows], 3, torch.Generator().manual_seed(5))
    step = model._fused_step()
    m = model.module_
    tables = (m.user_factors.weight, m.item_factors.weight, m.user_bias.weight, m.item_bias.weight)
    twin = [t.detach().clone().requires_grad_() for t in tables]

    # the tensor path, on a copy: the model's own batch loss with those negatives, then the optimiser
    copy = model._build_module(train.n_users, train.n_items)
    for p, t in zip((copy.user_factors.weight, copy.item_factors.weight, copy.user_bias.weight,
                     copy.item_bias.weight), twin, strict=True):
        p.data.copy_(t.detach())
    model.module_ = copy
    model._negatives.sample = lambda users, n: negatives  # type: ignore[method-assign]
    torch_opt = RowWiseAdagrad(copy.parameters(), lr=0.2, weight_decay=0.3)
    batch = {k: v[rows] for k, v in data.items()}
    torch_loss = model._batch_loss(batch)
    torch_loss.backward()
    torch_opt.step()

    kernel_opt = RowWiseAdagrad(m.parameters(), lr=0.2, weight_decay=0.3)
    group = kernel_opt.param_groups[0]
    sums = tuple(kernel_opt.state_sums(group)[p] for p in tables)
    kernel_loss = ranking_kernel.sampled_adagrad_step(tables, sums, data["user_idx"], data["item_idx"], rows,
                                                      negatives, loss, 0.2, 0.3, group["eps"], step._work(50))
    assert kernel_loss == pytest.approx(float(torch_loss.detach()), rel=1e-5)
    torch_sums = torch_opt.state_sums(torch_opt.param_groups[0])
    theirs_all = (copy.user_factors.weight, copy.item_factors.weight, copy.user_bias.weight, copy.item_bias.weight)
    for k, (mine, theirs) in enumerate(zip(tables, theirs_all, strict=True)):
        if not (loss == "bpr" and k == 2):  # BPR's user bias cancels in every difference: it stays 0
            assert not torch.equal(mine.detach(), twin[k].detach())  # the step moved the table
        torch.testing.assert_close(mine.detach(), theirs.detach(), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(kernel_opt.state_sums(group)[mine], torch_sums[theirs], rtol=1e-4, atol=1e-8)


def _sampler_csr(train: Interactions) -> tuple[NegativeSampler, torch.Tensor, torch.Tensor]:
    sampler = NegativeSampler(train.n_items, train.to_csr())
    indptr = torch.cat([sampler.starts, torch.tensor([sampler.keys.numel()])])
    return sampler, indptr, sampler.keys % train.n_items


def test_draws_are_true_negatives_reproducible_and_spread_over_the_catalogue():
    train = _positives(n_users=30, n_items=25, per_user=20)  # dense: 80% of each row seen
    sampler, indptr, indices = _sampler_csr(train)
    users = torch.arange(30).repeat_interleave(50)
    rows = torch.arange(users.numel())
    a = ranking_kernel.draw_negatives(users, rows, 4, 11, indptr, indices, 25)
    b = ranking_kernel.draw_negatives(users, rows, 4, 11, indptr, indices, 25)
    c = ranking_kernel.draw_negatives(users, rows, 4, 12, indptr, indices, 25)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (1500, 4) and int(a.min()) >= 0 and int(a.max()) < 25
    assert not sampler.contains(users[:, None].expand(-1, 4), a).any()
    for u in range(30):  # every unseen item of a user is drawn (5 of them, 200 draws each user)
        unseen = set(range(25)) - set(indices[indptr[u]: indptr[u + 1]].tolist())
        assert set(a[users == u].flatten().tolist()) == unseen


@pytest.mark.parametrize("weighted", [False, True])
def test_the_seen_bit_set_gives_the_same_draws_as_the_search(weighted, monkeypatch):
    train = _positives(n_users=30, n_items=25, per_user=20)
    sampler, indptr, indices = _sampler_csr(train)
    users = torch.arange(30).repeat_interleave(50)
    rows = torch.arange(users.numel())
    cdf = torch.cumsum(torch.linspace(1.0, 3.0, 25, dtype=torch.float64), 0) if weighted else None
    bits = ranking_kernel.seen_bits(indptr, indices, 25)
    assert bits is not None and int(np.unpackbits(bits).sum()) == indices.numel()
    searched = ranking_kernel.draw_negatives(users, rows, 4, 5, indptr, indices, 25, cdf)
    looked_up = ranking_kernel.draw_negatives(users, rows, 4, 5, indptr, indices, 25, cdf, bits)
    assert torch.equal(searched, looked_up)
    assert not sampler.contains(users[:, None].expand(-1, 4), looked_up).any()
    monkeypatch.setattr(ranking_kernel, "SEEN_BITS_BYTES", 93)  # 30 x 25 cells need 94 bytes
    assert ranking_kernel.seen_bits(indptr, indices, 25) is None


def test_a_user_who_has_seen_all_but_one_item_gets_that_one():
    users = torch.tensor([0] * 9 + [1])
    items = torch.tensor([0, 1, 2, 3, 5, 6, 7, 8, 9, 4])  # user 0 has not seen item 4 (user 1 has)
    train = _frame(users, items)
    _, indptr, indices = _sampler_csr(train)
    user, missing = int(train.users.index([0])[0]), int(train.items.index([4])[0])
    draws = ranking_kernel.draw_negatives(torch.tensor([user]), torch.zeros(1, dtype=torch.int64), 64, 3, indptr,
                                          indices, 10)
    assert set(draws.flatten().tolist()) == {missing}


def test_popularity_weights_shape_the_draws():
    indptr, indices = torch.zeros(2, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    weights = torch.tensor([1.0, 0.0, 3.0, 6.0])
    draws = ranking_kernel.draw_negatives(torch.zeros(1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64),
                                          20000, 7, indptr, indices, 4, torch.cumsum(weights.double(), 0))
    share = torch.bincount(draws.flatten(), minlength=4).float() / 20000
    assert share[1] == 0
    torch.testing.assert_close(share, weights / weights.sum(), atol=0.02, rtol=0)


@pytest.fixture(scope="module")
def small_split(ml100k):
    """The top-N benchmark split of the first 300 users of ml-100k."""
    keep = ml100k.user_idx < 300
    return ranking_split(_frame(ml100k.user_idx[keep], ml100k.item_idx[keep], rating=ml100k.rating[keep],
                                timestamp=ml100k.timestamp[keep]))


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["bpr", "bce"])
def test_compiled_and_tensor_fits_learn_the_same(small_split, loss):
    """Same options, both paths: the loss falls over the epochs and NDCG@10 is comparable (draws differ)."""
    params = {"dim": 16, "epochs": 6, "optimizer": "rowwise_adagrad", "lr": 0.3, "weight_decay": 0.03}
    compiled = rt.make_model(loss, **params)
    assert compiled.uses_kernel()
    compiled.fit(small_split.train)
    tensor = rt.make_model(loss, **params)
    tensor.uses_kernel = lambda: False  # type: ignore[method-assign]  # what a GPU or a machine without Numba runs
    tensor.fit(small_split.train)
    results = []
    for model in (compiled, tensor):
        losses = [e.train_loss for e in model.history_.epochs]
        assert losses[-1] < 0.8 * losses[0]
        results.append(ranking_metrics_for(model, small_split.test, ks=(10,))[0]["ndcg@10"])
    popular = rt.make_model("pop").fit(small_split.train)
    floor = ranking_metrics_for(popular, small_split.test, ks=(10,))[0]["ndcg@10"]
    assert min(results) > floor
    assert abs(results[0] - results[1]) < 0.25 * max(results)


def test_path_selection():
    assert rt.make_model("bpr").uses_kernel() and rt.make_model("bce").uses_kernel()
    assert not rt.make_model("bpr", optimizer="adamw").uses_kernel()
    assert not rt.make_model("ranking_mf").uses_kernel()  # sampled softmax: the tensor path
    assert not rt.make_model("bpr", device="cuda").uses_kernel()


def test_the_step_does_not_depend_on_the_thread_count():
    """Each thread owns whole rows, so two threads make bit for bit the one-thread update."""
    g = torch.Generator().manual_seed(0)
    users, items = torch.randint(0, 30, (400,), generator=g), torch.randint(0, 20, (400,), generator=g)
    rows, negatives = torch.arange(0, 400, 3), torch.randint(0, 20, (134, 4), generator=g)
    results = []
    for threads in (1, 2):
        tables = tuple(t.clone() for t in (torch.randn(30, 5, generator=torch.Generator().manual_seed(1)),
                                           torch.randn(20, 5, generator=torch.Generator().manual_seed(2)),
                                           torch.zeros(30, 1), torch.full((20, 1), 0.1)))
        sums = tuple(torch.zeros(t.shape[0]) for t in tables)
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            loss = ranking_kernel.sampled_adagrad_step(tables, sums, users, items, rows, negatives, "bce", 0.1, 0.2,
                                                       1e-10, (torch.empty(134, 5), torch.empty(670, 5),
                                                               torch.empty(134, 5)))
        finally:
            torch.set_num_threads(before)
        results.append((loss, tables, sums))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    for a, b in zip(results[0][1] + results[0][2], results[1][1] + results[1][2], strict=True):
        assert torch.equal(a, b)


def test_prepare_fit_starts_loading_the_kernels_making_the_model_does_not():
    code = ("import recotorch as rt\nfrom recotorch.train import ranking_kernel as k\n"
            "model = rt.make_model('bpr')\nassert not k._WARM.started\nmodel.prepare_fit()\n"
            "assert k._WARM.started\nk.warm_up()\nassert k._WARM.done\n")  # warm_up waits for the thread
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
