"""Raw ids (ints or strings) <-> contiguous row indices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import polars as pl


class Vocab:
    """An ordered set of raw ids; position in the set is the row index.

    >>> v = Vocab(["u7", "u3"])
    >>> v.index(["u3", "zz"]).tolist()
    [1, -1]
    """

    def __init__(self, ids: Sequence[Any] | np.ndarray | pl.Series) -> None:
        series = ids if isinstance(ids, pl.Series) else pl.Series("id", _as_list(ids), strict=False)
        if series.null_count():
            raise ValueError("a vocabulary cannot hold a missing (null) id")
        if series.is_duplicated().any():
            raise ValueError("a vocabulary cannot hold the same id twice")
        self._ids = series.alias("id")
        self._lookup: pl.DataFrame | None = None

    @classmethod
    def from_values(cls, values: pl.Series) -> Vocab:
        """Vocabulary of the distinct values, in order of first appearance."""
        return cls(values.unique(maintain_order=True))

    def __len__(self) -> int:
        return self._ids.len()

    def __repr__(self) -> str:
        head = ", ".join(map(repr, self._ids.head(3).to_list()))
        return f"Vocab(n={len(self)}, dtype={self._ids.dtype}, ids=[{head}{', ...' if len(self) > 3 else ''}])"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._ids.equals(other._ids)

    @property
    def ids(self) -> pl.Series:
        return self._ids

    @property
    def is_integer(self) -> bool:
        return self._ids.dtype.is_integer()

    def index(self, raw_ids: Iterable[Any] | pl.Series | np.ndarray) -> np.ndarray:
        """Row index of each raw id, -1 where the id is unknown."""
        query = raw_ids if isinstance(raw_ids, pl.Series) else pl.Series("id", _as_list(raw_ids), strict=False)
        query = self._coerce(query)
        if self._lookup is None:
            self._lookup = pl.DataFrame({"id": self._ids, "idx": np.arange(len(self), dtype=np.int64)})
        joined = pl.DataFrame({"id": query}).join(self._lookup, on="id", how="left", maintain_order="left")
        return joined["idx"].fill_null(-1).to_numpy().astype(np.int64)  # writable copy

    def lookup(self, idx: Iterable[int] | np.ndarray) -> list[Any]:
        """Raw ids of row indices."""
        return self._ids.gather(np.asarray(idx, dtype=np.int64)).to_list()

    def extend(self, raw_ids: Iterable[Any] | pl.Series) -> Vocab:
        """A new vocabulary with unseen ids appended (existing indices unchanged)."""
        query = raw_ids if isinstance(raw_ids, pl.Series) else pl.Series("id", _as_list(raw_ids), strict=False)
        query = self._coerce(query).unique(maintain_order=True)
        new = query.filter(~query.is_in(self._ids.implode()))
        return Vocab(pl.concat([self._ids, new.cast(self._ids.dtype)]))

    def _coerce(self, query: pl.Series) -> pl.Series:
        """Make a query comparable with the stored ids ("42" finds 42 in an integer vocabulary)."""
        if query.dtype == self._ids.dtype:
            return query.alias("id")
        if self.is_integer:
            return query.cast(pl.Utf8).str.strip_chars().cast(pl.Int64, strict=False).cast(self._ids.dtype)
        return query.cast(pl.Utf8).alias("id")

    def to_json(self) -> dict[str, Any]:
        kind = "int" if self.is_integer else "str"
        return {"kind": kind, "ids": self._ids.to_list()}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Vocab:
        dtype = pl.Int64 if payload["kind"] == "int" else pl.Utf8
        return cls(pl.Series("id", payload["ids"], dtype=dtype))


def _as_list(values: Iterable[Any]) -> list[Any]:
    if isinstance(values, np.ndarray):
        return values.tolist()
    if isinstance(values, (str, bytes, int)):
        return [values]
    return list(values)
