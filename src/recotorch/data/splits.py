"""Train/test splits of `Interactions`, vectorised with torch ops (no Python loop per user or row).

Every splitter returns a `Split(train, test, cold)`. Test rows whose user or item never occurs in
`train` are moved to `cold` (counted, never silently dropped), so `test` only holds rows a
collaborative model can score. All three parts keep the input's vocabularies (no re-indexing),
and rows keep their input order inside each part.

Conventions:
- Fractions become row counts with `floor(frac * n)` (a tiny epsilon absorbs float noise such
  as 0.29 * 100 = 28.999...).
- "Latest" means largest timestamp; equal timestamps are ordered by row position (a later row
  counts as later), so every split is deterministic.
- Random splits use a local `torch.Generator` seeded with `seed`; global RNG state is untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl
import torch

from recotorch.data.interactions import Interactions

__all__ = [
    "GROUPLENS_FOLDS",
    "Split",
    "last_fraction",
    "leave_last_k",
    "predefined",
    "random",
    "random_per_user",
    "temporal",
    "user_last",
]

GROUPLENS_FOLDS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
_EPS = 1e-9


@dataclass(frozen=True, repr=False, eq=False)
class Split:
    """A train/test split; `cold` holds the test rows whose user or item is absent from `train`."""

    train: Interactions
    test: Interactions
    cold: Interactions

    @classmethod
    def build(cls, train: Interactions, test: Interactions) -> Split:
        """Split off the cold rows of `test` (user or item unseen in `train`) into `cold`."""
        if train.users != test.users or train.items != test.items:
            raise ValueError("train and test must share the same vocabularies")
        cold_user, cold_item = _cold_masks(train, test)
        cold = cold_user | cold_item
        return cls(train=train, test=test.subset(~cold), cold=test.subset(cold))

    def summary(self) -> dict[str, int]:
        """Row counts: train, test, cold, and why rows are cold (unseen user / item / both)."""
        cold_user, cold_item = _cold_masks(self.train, self.cold)
        return {
            "train": len(self.train),
            "test": len(self.test),
            "cold": len(self.cold),
            "cold_unseen_user": int(cold_user.sum()),
            "cold_unseen_item": int(cold_item.sum()),
            "cold_unseen_both": int((cold_user & cold_item).sum()),
        }

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"Split(train={s['train']:,}, test={s['test']:,}, cold={s['cold']:,} "
            f"[unseen user: {s['cold_unseen_user']:,}, unseen item: {s['cold_unseen_item']:,}, "
            f"both: {s['cold_unseen_both']:,}])"
        )


def _cold_masks(train: Interactions, rows: Interactions) -> tuple[torch.Tensor, torch.Tensor]:
    """(user unseen in train, item unseen in train) masks over `rows`, each (len(rows),) bool."""
    seen_users = torch.bincount(train.user_idx, minlength=train.n_users) > 0  # (n_users,)
    seen_items = torch.bincount(train.item_idx, minlength=train.n_items) > 0  # (n_items,)
    return ~seen_users[rows.user_idx], ~seen_items[rows.item_idx]


def _from_mask(data: Interactions, test_mask: torch.Tensor) -> Split:
    return Split.build(data.subset(~test_mask), data.subset(test_mask))


def _require_timestamp(data: Interactions, fn: str) -> torch.Tensor:
    if data.timestamp is None:
        raise ValueError(f"{fn}() orders rows by time, but these interactions have no timestamp")
    return data.timestamp


def _check_frac(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")


def _rank_within_user(data: Interactions, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Position of each row among its user's rows ordered by (key, row position).

    Returns (rank, count): both (n,) int64; rank 0 is the smallest key; count is the user's rows.
    """
    n = len(data)
    by_key = torch.argsort(key, stable=True)  # ties keep row order
    order = by_key[torch.argsort(data.user_idx[by_key], stable=True)]  # sorted by (user, key, row)
    counts = torch.bincount(data.user_idx, minlength=data.n_users)  # (n_users,)
    starts = torch.cumsum(counts, 0) - counts  # indptr[:-1] of the user-sorted rows
    rank = torch.empty(n, dtype=torch.int64)
    rank[order] = torch.arange(n) - starts[data.user_idx[order]]
    return rank, counts[data.user_idx]


def _latest_per_user(
    rank: torch.Tensor, count: torch.Tensor, frac: float, min_rows: int
) -> torch.Tensor:
    """Mask of each eligible user's last `max(1, floor(frac * n_u))` rows; >= 1 stays in train."""
    n_test = torch.floor(count.double() * frac + _EPS).long()
    n_test = torch.minimum(torch.clamp(n_test, min=1), count - 1)
    from_end = count - 1 - rank  # 0 = the user's last row
    return (count >= min_rows) & (from_end < n_test)


def random(data: Interactions, test_frac: float = 0.2, seed: int = 0) -> Split:
    """Uniformly random hold-out of `floor(test_frac * len(data))` rows."""
    _check_frac("test_frac", test_frac)
    n = len(data)
    gen = torch.Generator().manual_seed(seed)
    n_test = math.floor(test_frac * n + _EPS)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=gen)[:n_test]] = True
    return _from_mask(data, mask)


def temporal(data: Interactions, test_frac: float = 0.2) -> Split:
    """Global time cut: the latest `floor(test_frac * len(data))` rows go to test.

    Rows with equal timestamps are ordered by position, so the cut may fall inside a tie.
    """
    _check_frac("test_frac", test_frac)
    ts = _require_timestamp(data, "temporal")
    n = len(data)
    n_test = math.floor(test_frac * n + _EPS)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.argsort(ts, stable=True)[n - n_test :]] = True
    return _from_mask(data, mask)


def leave_last_k(data: Interactions, k: int = 1, min_train: int = 1) -> Split:
    """Per user, the `k` latest rows go to test.

    A user who would keep fewer than `min_train` rows in train (i.e. has fewer than
    `k + min_train` rows) keeps all rows in train and is not tested.
    """
    if k < 1 or min_train < 0:
        raise ValueError(f"need k >= 1 and min_train >= 0, got k={k}, min_train={min_train}")
    ts = _require_timestamp(data, "leave_last_k")
    rank, count = _rank_within_user(data, ts)
    mask = (count >= k + min_train) & (count - 1 - rank < k)
    return _from_mask(data, mask)


def user_last(data: Interactions, validation: bool = False) -> Split | tuple[Split, Interactions]:
    """Leave-one-out for next-item models: each user's last row (by time, ties by row position) is test.

    Users with a single row stay wholly in train (nothing to predict from). With `validation=True`
    returns `(split, valid)`: `valid` holds each user's second-to-last row (users with >= 3 rows),
    taken out of `split.train`, for choosing settings without touching the test target.
    """
    ts = _require_timestamp(data, "user_last")
    rank, count = _rank_within_user(data, ts)
    from_end = count - 1 - rank
    test_mask = (count >= 2) & (from_end == 0)
    if not validation:
        return _from_mask(data, test_mask)
    valid_mask = (count >= 3) & (from_end == 1)
    split = Split.build(data.subset(~test_mask & ~valid_mask), data.subset(test_mask))
    return split, data.subset(valid_mask)


def last_fraction(data: Interactions, frac: float = 0.2, min_rows: int = 5) -> Split:
    """Per user with >= `min_rows` rows, the latest `max(1, floor(frac * n_u))` rows go to test.

    Each tested user keeps at least one train row; users with fewer rows stay wholly in train.
    """
    _check_frac("frac", frac)
    if min_rows < 1:
        raise ValueError(f"min_rows must be >= 1, got {min_rows}")
    ts = _require_timestamp(data, "last_fraction")
    rank, count = _rank_within_user(data, ts)
    return _from_mask(data, _latest_per_user(rank, count, frac, min_rows))


def random_per_user(
    data: Interactions, frac: float = 0.2, min_rows: int = 5, seed: int = 0
) -> Split:
    """Per user with >= `min_rows` rows, a random `max(1, floor(frac * n_u))` rows go to test.

    Each tested user keeps at least one train row; users with fewer rows stay wholly in train.
    """
    _check_frac("frac", frac)
    if min_rows < 1:
        raise ValueError(f"min_rows must be >= 1, got {min_rows}")
    gen = torch.Generator().manual_seed(seed)
    key = torch.randperm(len(data), generator=gen)  # a random order within each user
    rank, count = _rank_within_user(data, key)
    return _from_mask(data, _latest_per_user(rank, count, frac, min_rows))


def _read_grouplens(path: Path, like: Interactions) -> Interactions:
    """Rows of a GroupLens `user item rating timestamp` TSV mapped onto `like`'s vocabularies."""
    frame = pl.read_csv(path, separator="\t", has_header=False,
                        new_columns=["user", "item", "rating", "timestamp"])
    u = torch.from_numpy(like.users.index(frame["user"]))
    i = torch.from_numpy(like.items.index(frame["item"]))
    for name, idx, col in (("user", u, "user"), ("item", i, "item")):
        unknown = idx < 0
        if unknown.any():
            examples = frame[col].filter(pl.Series(unknown.numpy())).unique().head(5).to_list()
            raise ValueError(f"{path.name}: {int(unknown.sum())} rows have a {name} id unknown "
                             f"to the data's vocabulary, e.g. {examples}")
    rating = timestamp = None
    if like.rating is not None:
        rating = torch.from_numpy(frame["rating"].cast(pl.Float32).to_numpy(writable=True))
    if like.timestamp is not None:
        timestamp = torch.from_numpy(frame["timestamp"].cast(pl.Int64).to_numpy(writable=True))
    return replace(like, user_idx=u, item_idx=i, rating=rating, timestamp=timestamp,
                   source=str(path))


def predefined(data: Interactions, root: str | Path, fold: str) -> Split:
    """A GroupLens predefined fold: `<root>/<fold>.base` is train, `<root>/<fold>.test` is test.

    Raw ids are mapped through `data`'s vocabularies (ValueError if one is unknown). Rating and
    timestamp are read from the files, and kept only where `data` has them (same schema as data).
    """
    if fold not in GROUPLENS_FOLDS:
        raise ValueError(f"unknown fold {fold!r}; expected one of {', '.join(GROUPLENS_FOLDS)}")
    root = Path(root)
    train = _read_grouplens(root / f"{fold}.base", data)
    test = _read_grouplens(root / f"{fold}.test", data)
    return Split.build(train, test)
