"""Negative sampling: never a positive, right shape, reproducible, and the intended distribution."""

from __future__ import annotations

import pytest
import torch

from recotorch.data.interactions import build_csr
from recotorch.data.sampling import NegativeSampler, sample_negatives

N_USERS, N_ITEMS = 40, 30


@pytest.fixture(scope="module")
def dense() -> torch.Tensor:
    """A (users, items) 0/1 matrix, about half full; user 0 has one free item, user 1 two."""
    g = torch.Generator().manual_seed(0)
    m = torch.rand(N_USERS, N_ITEMS, generator=g) < 0.5
    m[0] = True
    m[0, 17] = False
    m[1] = True
    m[1, [3, 29]] = False
    return m


@pytest.fixture(scope="module")
def seen(dense):
    u, i = dense.nonzero(as_tuple=True)
    return build_csr(u, i, N_USERS)


def test_negatives_are_never_positives_and_have_the_right_shape(dense, seen):
    users = torch.arange(N_USERS).repeat(50)
    neg = sample_negatives(users, N_ITEMS, 7, seen, torch.Generator().manual_seed(1))
    assert neg.shape == (users.numel(), 7) and neg.dtype == torch.int64
    assert ((neg >= 0) & (neg < N_ITEMS)).all()
    assert not dense[users[:, None].expand(-1, 7), neg].any()
    assert (neg[users == 0] == 17).all()
    assert set(neg[users == 1].unique().tolist()) == {3, 29}


def test_the_exact_fallback_alone_is_correct_and_uniform(dense, seen):
    sampler = NegativeSampler(N_ITEMS, seen, max_rounds=0)  # every collision goes to the fallback
    users = torch.full((30_000,), 5)
    neg = sampler.sample(users, 1, torch.Generator().manual_seed(2)).flatten()
    free = (~dense[5]).nonzero().flatten()
    counts = torch.bincount(neg, minlength=N_ITEMS)
    assert counts[dense[5]].sum() == 0
    expected = neg.numel() / free.numel()
    assert ((counts[free] - expected).abs() < 5 * expected**0.5).all()  # within 5 sigma


def test_reproducible_with_a_generator_and_seed_dependent(seen):
    users = torch.arange(N_USERS)
    a = sample_negatives(users, N_ITEMS, 5, seen, torch.Generator().manual_seed(3))
    b = sample_negatives(users, N_ITEMS, 5, seen, torch.Generator().manual_seed(3))
    c = sample_negatives(users, N_ITEMS, 5, seen, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_without_seen_sets_the_draws_are_roughly_uniform():
    neg = sample_negatives(torch.zeros(20_000, dtype=torch.int64), 10, 5, None, torch.Generator().manual_seed(5))
    freq = torch.bincount(neg.flatten(), minlength=10).double() / neg.numel()
    assert (freq - 0.1).abs().max() < 0.01


def test_uniform_over_each_users_unseen_items(dense, seen):
    users = torch.arange(2, N_USERS).repeat(400)
    neg = sample_negatives(users, N_ITEMS, 4, seen, torch.Generator().manual_seed(6))
    counts = torch.zeros(N_USERS, N_ITEMS).index_put_((users[:, None].expand(-1, 4), neg), torch.ones(neg.shape),
                                                      accumulate=True)
    free = (~dense[2:]).double()
    expected = 1600 * free / free.sum(1, keepdim=True)  # 400 draws x 4 per user, spread over free items
    assert (counts[2:][~dense[2:]] - expected[~dense[2:]]).abs().max() < 6 * expected[~dense[2:]].max() ** 0.5


def test_popularity_weights_shape_the_distribution():
    weights = torch.tensor([8.0, 4.0, 2.0, 1.0, 1.0, 0.0])
    sampler = NegativeSampler(6, None, weights)
    neg = sampler.sample(torch.zeros(40_000, dtype=torch.int64), 1, torch.Generator().manual_seed(7))
    freq = torch.bincount(neg.flatten(), minlength=6).double() / neg.numel()
    torch.testing.assert_close(freq, (weights / weights.sum()).double(), atol=0.01, rtol=0)


def test_popularity_weighted_draws_still_skip_positives(dense, seen):
    weights = torch.linspace(1.0, 5.0, N_ITEMS)
    users = torch.arange(N_USERS).repeat(20)
    neg = sample_negatives(users, N_ITEMS, 3, seen, torch.Generator().manual_seed(8), weights=weights)
    assert not dense[users[:, None].expand(-1, 3), neg].any()


def test_contains_and_the_global_rng(dense, seen):
    sampler = NegativeSampler(N_ITEMS, seen)
    u, i = torch.meshgrid(torch.arange(N_USERS), torch.arange(N_ITEMS), indexing="ij")
    assert torch.equal(sampler.contains(u, i), dense)
    torch.manual_seed(9)
    a = sampler.sample(torch.arange(N_USERS), 3)
    torch.manual_seed(9)
    assert torch.equal(a, sampler.sample(torch.arange(N_USERS), 3))


def test_a_user_who_has_seen_everything_is_an_error():
    seen = build_csr(torch.zeros(4, dtype=torch.int64), torch.arange(4), 1)
    with pytest.raises(ValueError, match="every item"):
        sample_negatives(torch.tensor([0]), 4, 2, seen)


def test_duplicate_positives_are_fine():
    seen = build_csr(torch.tensor([0, 0, 0]), torch.tensor([1, 1, 2]), 1)
    neg = sample_negatives(torch.zeros(500, dtype=torch.int64), 4, 3, seen, torch.Generator().manual_seed(10))
    assert set(neg.unique().tolist()) == {0, 3}
