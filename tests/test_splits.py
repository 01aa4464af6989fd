"""Tests for recotorch.data.splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recotorch.data import splits
from recotorch.data.interactions import Interactions
from recotorch.data.splits import Split


def make(users, items, ts=None) -> Interactions:
    """Interactions whose `rating` column holds the row number (a row identity for the tests)."""
    cols = {"user": users, "item": items, "rating": np.arange(len(users), dtype=np.float32)}
    if ts is not None:
        cols["timestamp"] = ts
    return Interactions.from_frame(pl.DataFrame(cols), duplicates="keep")  # rows, repeats and all


@pytest.fixture(scope="module")
def synth() -> Interactions:
    """600 rows, 30 users, 40 items, heavy timestamp ties (50 distinct values)."""
    rng = np.random.default_rng(0)
    n = 600
    return make(rng.integers(0, 30, n), rng.integers(0, 40, n), rng.integers(0, 50, n))


def row_ids(part: Interactions) -> torch.Tensor:
    return part.rating.long()


def users_of(split: Split, part: str) -> torch.Tensor:
    return getattr(split, part).user_idx


SPLITTERS = {
    "random": lambda d: splits.random(d, 0.2, seed=3),
    "temporal": lambda d: splits.temporal(d, 0.2),
    "leave_last_k": lambda d: splits.leave_last_k(d, k=2, min_train=3),
    "last_fraction": lambda d: splits.last_fraction(d, 0.3, min_rows=5),
    "random_per_user": lambda d: splits.random_per_user(d, 0.3, min_rows=5, seed=1),
}


@pytest.mark.parametrize("name", list(SPLITTERS))
def test_parts_are_disjoint_and_cover_input(synth: Interactions, name: str) -> None:
    s = SPLITTERS[name](synth)
    ids = torch.cat([row_ids(s.train), row_ids(s.test), row_ids(s.cold)])
    assert torch.equal(ids.sort().values, torch.arange(len(synth)))  # union == input, no overlap
    for part in (s.train, s.test, s.cold):
        rid = row_ids(part)
        assert torch.equal(part.user_idx, synth.user_idx[rid])  # rows unchanged, not re-indexed
        assert torch.equal(part.item_idx, synth.item_idx[rid])
        assert torch.equal(part.timestamp, synth.timestamp[rid])
        assert part.users == synth.users and part.items == synth.items
    assert len(s.test) > 0


@pytest.mark.parametrize("name", list(SPLITTERS))
def test_cold_rows_are_exactly_the_unseen_ones(synth: Interactions, name: str) -> None:
    s = SPLITTERS[name](synth)
    seen_u, seen_i = set(s.train.user_idx.tolist()), set(s.train.item_idx.tolist())
    assert all(u in seen_u and i in seen_i
               for u, i in zip(s.test.user_idx.tolist(), s.test.item_idx.tolist(), strict=True))
    assert all(u not in seen_u or i not in seen_i
               for u, i in zip(s.cold.user_idx.tolist(), s.cold.item_idx.tolist(), strict=True))


def test_global_sizes(synth: Interactions) -> None:
    # floor(0.2 * 600) = 120 held-out rows (test + cold) for both global splits
    for s in (splits.random(synth, 0.2), splits.temporal(synth, 0.2)):
        assert len(s.test) + len(s.cold) == 120 and len(s.train) == 480


def test_per_user_sizes(synth: Interactions) -> None:
    n_u = torch.bincount(synth.user_idx, minlength=synth.n_users)
    held = lambda s: torch.bincount(torch.cat([s.test.user_idx, s.cold.user_idx]),  # noqa: E731
                                    minlength=synth.n_users)
    # leave_last_k(k=2, min_train=3): users with >= 5 rows give 2, others give 0
    expected = torch.where(n_u >= 5, 2, 0)
    assert torch.equal(held(splits.leave_last_k(synth, k=2, min_train=3)), expected)
    # fraction splits: max(1, floor(0.3 * n_u)) for users with >= 5 rows, else 0
    expected = torch.where(n_u >= 5, torch.clamp((n_u * 3) // 10, min=1), 0)
    assert torch.equal(held(splits.last_fraction(synth, 0.3, min_rows=5)), expected)
    assert torch.equal(held(splits.random_per_user(synth, 0.3, min_rows=5)), expected)


def test_fraction_floor_is_robust_to_float_noise() -> None:
    # 0.29 * 100 == 28.999999999999996 in floating point; we still want 29 rows
    d = make(["a"] * 100, list(range(100)), list(range(100)))
    s = splits.last_fraction(d, 0.29, min_rows=5)
    assert len(s.test) + len(s.cold) == 29


def test_small_users_rules() -> None:
    # users: a has 1 row, b has 2 rows, c has 5 rows
    d = make(list("abbccccc"), list("xxyxyzwv"), [1, 1, 2, 1, 2, 3, 4, 5])
    s = splits.leave_last_k(d, k=1, min_train=1)  # needs >= 2 rows: b and c give 1 each
    assert sorted(row_ids(s.test).tolist() + row_ids(s.cold).tolist()) == [2, 7]
    s = splits.last_fraction(d, 0.2, min_rows=5)  # only c: max(1, floor(0.2 * 5)) = 1 row
    assert row_ids(s.test).tolist() + row_ids(s.cold).tolist() == [7]
    s = splits.last_fraction(d, 0.5, min_rows=2)  # b: 1 row, c: floor(2.5) = 2 rows
    assert sorted(row_ids(s.test).tolist() + row_ids(s.cold).tolist()) == [2, 6, 7]
    s = splits.leave_last_k(d, k=4, min_train=1)  # c has 5 >= 4 + 1 rows: its 4 latest
    assert sorted(row_ids(s.test).tolist() + row_ids(s.cold).tolist()) == [4, 5, 6, 7]
    s = splits.leave_last_k(d, k=4, min_train=2)  # nobody has 6 rows: nothing held out
    assert len(s.train) == 8


@pytest.mark.parametrize("name", ["leave_last_k", "last_fraction"])
def test_per_user_temporal_order(synth: Interactions, name: str) -> None:
    s = SPLITTERS[name](synth)
    held_u = torch.cat([s.test.user_idx, s.cold.user_idx])
    held_t = torch.cat([s.test.timestamp, s.cold.timestamp])
    big = torch.iinfo(torch.int64).max
    first_held = torch.full((synth.n_users,), big).scatter_reduce(0, held_u, held_t, "amin")
    last_train = torch.full((synth.n_users,), -1).scatter_reduce(
        0, s.train.user_idx, s.train.timestamp, "amax")
    assert (first_held >= last_train).all()
    assert (first_held < big).sum() > 0  # some users were tested at all


def test_temporal_global_order_and_ties() -> None:
    rng = np.random.default_rng(1)
    d = make(rng.integers(0, 5, 50), rng.integers(0, 5, 50), rng.integers(0, 4, 50))
    s = splits.temporal(d, 0.3)
    held = torch.cat([s.test.timestamp, s.cold.timestamp])
    assert held.min() >= s.train.timestamp.max()
    # all timestamps equal: ties go by row position, the last rows are the "latest"
    d = make(list("abcdeabcde"), list("vwxyzzyxwv"), [7] * 10)
    s = splits.temporal(d, 0.3)
    assert sorted(row_ids(s.test).tolist() + row_ids(s.cold).tolist()) == [7, 8, 9]
    s = splits.leave_last_k(d, k=1)
    assert sorted(row_ids(s.test).tolist() + row_ids(s.cold).tolist()) == [5, 6, 7, 8, 9]
    # many ties (3 timestamps over 200 rows): held-out = the last 60 in (timestamp, row) order
    ts = rng.integers(0, 3, 200)
    d = make(rng.integers(0, 5, 200), rng.integers(0, 5, 200), ts)
    s = splits.temporal(d, 0.3)
    want = np.lexsort((np.arange(200), ts))[-60:]
    assert sorted(row_ids(s.test).tolist() + row_ids(s.cold).tolist()) == sorted(want.tolist())


def test_seeds_reproducible_and_local(synth: Interactions) -> None:
    for fn in (splits.random, splits.random_per_user):
        torch.manual_seed(123)
        state = torch.get_rng_state()
        a, b, c = fn(synth, seed=5), fn(synth, seed=5), fn(synth, seed=6)
        assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
        assert torch.equal(row_ids(a.train), row_ids(b.train))
        assert torch.equal(row_ids(a.test), row_ids(b.test))
        assert not torch.equal(row_ids(a.train), row_ids(c.train))


def test_cold_rows_separated_and_counted() -> None:
    #  row user item ts
    #   0   a    x   1   train
    #   1   a    y   2   train
    #   2   b    x   3   train
    #   3   b    y   4   train
    #   4   a    z   5   cold: item z unseen
    #   5   c    x   6   cold: user c unseen
    #   6   c    w   7   cold: user c and item w unseen
    #   7   a    y   8   test (warm)
    d = make(list("aabbacca"), list("xyxyzxwy"), [1, 2, 3, 4, 5, 6, 7, 8])
    s = splits.temporal(d, 0.5)  # floor(0.5 * 8) = 4 latest rows held out
    assert row_ids(s.train).tolist() == [0, 1, 2, 3]
    assert row_ids(s.test).tolist() == [7]
    assert row_ids(s.cold).tolist() == [4, 5, 6]
    assert s.summary() == {"train": 4, "test": 1, "cold": 3, "cold_unseen_user": 2,
                           "cold_unseen_item": 2, "cold_unseen_both": 1}
    assert repr(s) == ("Split(train=4, test=1, cold=3 [unseen user: 2, unseen item: 2, both: 1])")
    assert s.cold.n_users == d.n_users  # same vocabularies, no re-indexing


def test_timestamp_required() -> None:
    d = make(list("aabb"), list("xyxy"))
    for fn in (splits.temporal, splits.leave_last_k, splits.last_fraction):
        with pytest.raises(ValueError, match="timestamp"):
            fn(d)
    assert len(splits.random_per_user(d, 0.5, min_rows=2).train) == 2


def test_bad_arguments(synth: Interactions) -> None:
    with pytest.raises(ValueError):
        splits.random(synth, 1.0)
    with pytest.raises(ValueError):
        splits.leave_last_k(synth, k=0)
    with pytest.raises(ValueError, match="fold"):
        splits.predefined(synth, "/nonexistent", "u9")


def test_predefined_unknown_id(tmp_path: Path) -> None:
    d = make([1, 1, 2], [10, 11, 10], [1, 2, 3])
    (tmp_path / "u1.base").write_text("1\t10\t5\t1\n2\t10\t3\t3\n")
    (tmp_path / "u1.test").write_text("1\t11\t4\t2\n")
    s = splits.predefined(d, tmp_path, "u1")
    assert (len(s.train), len(s.test), len(s.cold)) == (2, 0, 1)  # item 11 unseen in base
    assert s.cold.rating.tolist() == [4.0] and s.cold.timestamp.tolist() == [2]
    (tmp_path / "u1.test").write_text("3\t11\t4\t2\n")
    with pytest.raises(ValueError, match="unknown"):
        splits.predefined(d, tmp_path, "u1")


@pytest.mark.slow
@pytest.mark.parametrize(("fold", "n_base", "n_test"),
                         [("u1", 80_000, 20_000), ("u5", 80_000, 20_000), ("ub", 90_570, 9_430)])
def test_predefined_on_ml100k(ml100k: Interactions, ml100k_dir: Path, fold: str, n_base: int,
                              n_test: int) -> None:
    # `ml100k` (conftest) is u.data read with polars + Interactions.from_frame
    read = lambda name: pl.read_csv(ml100k_dir / name, separator="\t", has_header=False,  # noqa: E731
                                    new_columns=["user", "item", "rating", "timestamp"])
    data = ml100k
    s = splits.predefined(data, ml100k_dir, fold)
    assert len(s.train) == n_base
    assert len(s.test) + len(s.cold) == n_test
    # independent count of cold rows: <fold>.test rows whose user/item is absent from .base
    base, test = read(f"{fold}.base"), read(f"{fold}.test")
    cold = test.filter(~pl.col("user").is_in(base["user"].implode())
                       | ~pl.col("item").is_in(base["item"].implode()))
    assert len(s.cold) == cold.height
    assert s.summary()["cold_unseen_user"] == 0
    assert float(s.train.rating.sum()) == float(base["rating"].sum())
    assert int(s.test.timestamp.sum() + s.cold.timestamp.sum()) == int(test["timestamp"].sum())
    assert s.train.users == data.users and s.test.items == data.items
