"""Tests for recotorch.evaluate.metrics: hand-computed values, with the arithmetic in comments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recotorch.data.interactions import CSR
from recotorch.evaluate import (
    evaluate_ranking,
    mae,
    ranking_metrics,
    ranking_metrics_per_user,
    rmse,
    top_k,
)

L2, L3, L4, L5 = (math.log2(x) for x in (2, 3, 4, 5))


def csr(rows: list[list[int]]) -> CSR:
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
    indptr = torch.zeros(len(rows) + 1, dtype=torch.int64)
    torch.cumsum(lengths, 0, out=indptr[1:])
    flat = [i for r in rows for i in sorted(r)]
    return CSR(indptr, torch.tensor(flat, dtype=torch.int64))


# ---- rating metrics ------------------------------------------------------------------------
def test_rmse_mae() -> None:
    # errors: 1-2=-1, 2-2=0, 3-5=-2 -> mse = (1 + 0 + 4) / 3 = 5/3, mae = (1 + 0 + 2) / 3 = 1
    assert rmse(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 2.0, 5.0])) == pytest.approx(
        math.sqrt(5 / 3))
    assert mae(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0])) == pytest.approx(1.0)
    assert rmse([4.0], [4.0]) == 0.0
    with pytest.raises(ValueError, match="shape"):  # would broadcast to (3, 3) otherwise
        rmse(torch.zeros(3, 1), torch.zeros(3))
    with pytest.raises(ValueError):
        mae(torch.zeros(0), torch.zeros(0))


# ---- CSR row selection -------------------------------------------------------------------
def test_csr_entries_and_select_follow_the_requested_rows():
    m = CSR(torch.tensor([0, 2, 2, 5]), torch.tensor([1, 4, 0, 2, 3]), torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    which, pos = m.entries(torch.tensor([2, 1, 0, 2]))  # repeated, out of order, an empty row
    assert which.tolist() == [0, 0, 0, 2, 2, 3, 3, 3]
    assert m.indices[pos].tolist() == [0, 2, 3, 1, 4, 0, 2, 3]
    sub = m.select(torch.tensor([2, 1, 0]))
    assert sub.indptr.tolist() == [0, 3, 3, 5]
    assert sub.indices.tolist() == [0, 2, 3, 1, 4] and sub.values.tolist() == [3.0, 4.0, 5.0, 1.0, 2.0]


# ---- top_k ---------------------------------------------------------------------------------
def test_top_k_ties_lower_index_first() -> None:
    scores = torch.tensor([[0.1, 0.5, 0.5, 0.9, 0.5],
                           [1.0, 1.0, 1.0, 1.0, 1.0]])
    idx, val = top_k(scores, 3)
    # row 0: 0.9 (item 3), then the 0.5 tie {1, 2, 4} in index order -> 1, 2 (4 cut off)
    assert idx.tolist() == [[3, 1, 2], [0, 1, 2]]
    assert torch.equal(val, scores.gather(1, idx))


def test_top_k_masks_seen_and_pads_with_minus_one() -> None:
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0],
                           [5.0, 4.0, 3.0, 2.0, 1.0],
                           [1.0, -torch.inf, 2.0, -torch.inf, -torch.inf]])
    seen = csr([[0, 1, 2, 3], [3], []])
    before = scores.clone()
    # score row 0 -> CSR row 1 (seen {3}), row 1 -> CSR row 0 (seen {0,1,2,3}), row 2 -> none
    idx, val = top_k(scores, 3, exclude=seen, rows=torch.tensor([1, 0, 2]))
    assert idx.tolist() == [[0, 1, 2], [4, -1, -1], [2, 0, -1]]  # -inf scores are no candidates
    assert val[1, 1:].eq(-torch.inf).all() and val[1, 0] == 1.0
    assert torch.equal(scores, before)  # input not modified
    idx, _ = top_k(scores[:1], 7)  # k > n_items: pad
    assert idx.tolist() == [[0, 1, 2, 3, 4, -1, -1]]
    with pytest.raises(ValueError, match="NaN"):
        top_k(torch.tensor([[0.0, torch.nan]]), 1)


def test_top_k_matches_stable_sort_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (64, 50), generator=gen).float()  # lots of ties
    scores[scores == 0] = -torch.inf
    for k in (1, 5, 20, 50):
        vals, order = torch.sort(scores, dim=1, descending=True, stable=True)
        ref = order[:, :k].masked_fill(vals[:, :k] == -torch.inf, -1)
        idx, got = top_k(scores, k)
        assert torch.equal(idx, ref)
        assert torch.equal(got, vals[:, :k])


def test_top_k_fast_and_tied_rows_agree_with_reference_and_inplace_masks() -> None:
    gen = torch.Generator().manual_seed(1)
    scores = torch.rand(40, 300, generator=gen)  # distinct values: the single-topk path
    scores[::3] = torch.randint(0, 3, (14, 300), generator=gen).float()  # every third row full of ties
    seen = csr([[j % 300, (7 * j) % 300] for j in range(40)])
    masked = scores.clone()
    which = torch.arange(40).repeat_interleave(2)
    masked[which, seen.indices] = -torch.inf
    vals, order = torch.sort(masked, dim=1, descending=True, stable=True)
    for k in (1, 10, 299, 300):
        work = scores.clone()
        idx, got = top_k(work, k, exclude=seen, inplace=True)
        ref = order[:, :k].masked_fill(vals[:, :k] == -torch.inf, -1)  # excluded slots are empty
        assert torch.equal(idx, ref) and torch.equal(got, vals[:, :k])
        assert torch.equal(work, masked)  # inplace: the exclusions were written into the input


# ---- ranking metrics -----------------------------------------------------------------------
# Four users, n_items = 10, lists of width 4, ks = (2, 4):
#   u0: rec [1, 2, 3, 4]    rel {2, 4, 9}  hits at ranks 2 and 4
#   u1: rec [5, -1, -1, -1] rel {5}        hit at rank 1, then empty slots
#   u2: rec [7, 8, 0, 6]    rel {}         not evaluated
#   u3: rec [0, 1, 2, 3]    rel {6, 7}     no hit
REC = torch.tensor([[1, 2, 3, 4], [5, -1, -1, -1], [7, 8, 0, 6], [0, 1, 2, 3]])
REL = csr([[2, 4, 9], [5], [], [6, 7]])
NAN = float("nan")
EXPECTED_PER_USER = {
    # u0: 1/3 ; u1: 1/1 ; u3: 0/2
    "recall@2": [1 / 3, 1.0, NAN, 0.0],
    "precision@2": [1 / 2, 1 / 2, NAN, 0.0],  # u1: 1 hit / K=2 (empty slot = miss)
    # u0: DCG = 1/log2(3); IDCG over min(3, 2) = 2 hits: 1/log2(2) + 1/log2(3)
    "ndcg@2": [(1 / L3) / (1 / L2 + 1 / L3), 1.0, NAN, 0.0],
    # u0: AP = P@2 / min(3, 2) = (1/2) / 2 ; u1: (1/1) / 1
    "map@2": [0.25, 1.0, NAN, 0.0],
    "hit_rate@2": [1.0, 1.0, NAN, 0.0],
    "mrr@2": [0.5, 1.0, NAN, 0.0],
    "recall@4": [2 / 3, 1.0, NAN, 0.0],
    "precision@4": [2 / 4, 1 / 4, NAN, 0.0],
    # u0: DCG = 1/log2(3) + 1/log2(5); IDCG over min(3, 4) = 3: 1 + 1/log2(3) + 1/log2(4)
    "ndcg@4": [(1 / L3 + 1 / L5) / (1 / L2 + 1 / L3 + 1 / L4), 1.0, NAN, 0.0],
    # u0: AP = (P@2 + P@4) / min(3, 4) = (1/2 + 2/4) / 3 = 1/3
    "map@4": [1 / 3, 1.0, NAN, 0.0],
    "hit_rate@4": [1.0, 1.0, NAN, 0.0],
    "mrr@4": [0.5, 1.0, NAN, 0.0],
    "mrr": [0.5, 1.0, NAN, 0.0],
}


def test_ranking_metrics_per_user_hand_computed() -> None:
    got = ranking_metrics_per_user(REC, REL, (2, 4), n_items=10)
    assert got.pop("n_relevant").tolist() == [3, 1, 0, 2]
    assert set(got) == set(EXPECTED_PER_USER)
    for name, want in EXPECTED_PER_USER.items():
        torch.testing.assert_close(got[name], torch.tensor(want, dtype=torch.float64),
                                   equal_nan=True, msg=name)


def test_ranking_metrics_means_coverage_and_users() -> None:
    got = ranking_metrics(REC, REL, (2, 4), n_items=10)
    for name, want in EXPECTED_PER_USER.items():  # mean over u0, u1, u3 (u2 has no relevant)
        assert got[name] == pytest.approx(float(np.nanmean(want))), name
    assert got["recall@2"] == pytest.approx(4 / 9)  # (1/3 + 1 + 0) / 3
    assert got["map@4"] == pytest.approx(4 / 9)  # (1/3 + 1 + 0) / 3
    # coverage over evaluated users only; u2's items 7, 8 do not count:
    # @2: {1,2} | {5} | {0,1} = {0,1,2,5} -> 4/10 ; @4: adds 3, 4 -> {0..5} -> 6/10
    assert got["coverage@2"] == pytest.approx(0.4)
    assert got["coverage@4"] == pytest.approx(0.6)
    assert got["users"] == 3


def test_mrr_beyond_cutoff_and_duplicate_relevant() -> None:
    rec = torch.tensor([[0, 1, 9, 2]])
    rel = csr([[9, 9]])  # a duplicated test row counts once: |rel| = 1
    got = ranking_metrics_per_user(rec, rel, (2, 4), n_items=10)
    assert got["n_relevant"].tolist() == [1]
    assert got["mrr@2"].item() == 0.0 and got["mrr@4"].item() == pytest.approx(1 / 3)
    assert got["ndcg@4"].item() == pytest.approx(1 / L4)  # hit at rank 3: 1/log2(4), IDCG = 1
    assert got["map@4"].item() == pytest.approx(1 / 3)  # P@3 = 1/3, over min(1, 4) = 1
    assert got["recall@4"].item() == 1.0


def test_ranking_metrics_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="ks"):
        ranking_metrics(REC, REL, (2, 5), n_items=10)  # lists are only 4 wide
    with pytest.raises(ValueError, match="twice"):
        ranking_metrics(torch.tensor([[1, 1, -1, -1]]), csr([[1]]), (2,), n_items=10)
    with pytest.raises(ValueError, match="rows"):
        ranking_metrics(REC, csr([[1]]), (2,), n_items=10)
    with pytest.raises(ValueError, match="n_items"):
        ranking_metrics(REC, REL, (2,), n_items=5)


def test_no_evaluable_users() -> None:
    got = ranking_metrics(REC[:1], csr([[]]), (2,), n_items=10)
    assert got["users"] == 0 and math.isnan(got["recall@2"])


# ---- evaluate_ranking ----------------------------------------------------------------------
def test_evaluate_ranking_masks_seen_items() -> None:
    # user 0 saw items 0, 1 (scored highest); test item 2 comes first once they are masked
    # user 1 has no test item: skipped, not counted
    table = torch.tensor([[9.0, 8.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    got = evaluate_ranking(lambda u: table[u], torch.tensor([0, 1]), csr([[0, 1], []]),
                           csr([[2], []]), n_items=4, ks=(1,))
    assert got["recall@1"] == 1.0 and got["users"] == 1
    assert got["coverage@1"] == 0.25  # one item (2) out of 4


def test_evaluate_ranking_independent_of_batch_size() -> None:
    gen = torch.Generator().manual_seed(0)
    n_users, n_items = 40, 30
    table = torch.randint(0, 3, (n_users, n_items), generator=gen).float()  # heavy ties
    train = (torch.rand(n_users, n_items, generator=gen) < 0.2).tolist()
    test = (torch.rand(n_users, n_items, generator=gen) < 0.15).tolist()
    train_csr = csr([[i for i, x in enumerate(r) if x] for r in train])
    test_csr = csr([[i for i, x in enumerate(r) if x] for r in test])
    sizes: list[int] = []

    def score(users: torch.Tensor) -> torch.Tensor:
        sizes.append(users.numel())
        return table[users]

    users = torch.randperm(n_users, generator=gen)
    results = [evaluate_ranking(score, users, train_csr, test_csr, n_items, (5, 10), batch_size=b)
               for b in (1, 7, n_users)]
    assert max(sizes) <= n_users and sizes.count(1) >= 30  # chunks really were of size 1
    assert results[0] == results[1] == results[2]
    # and equal to scoring everyone at once by hand
    keep = users[test_csr.row_lengths()[users] > 0]
    rec, _ = top_k(table[keep], 10, exclude=train_csr, rows=keep)
    rel = csr([test_csr.row(int(u)).tolist() for u in keep])
    assert results[0] == ranking_metrics(rec, rel, (5, 10), n_items=n_items)
    assert results[0]["users"] == keep.numel() > 0
