"""What the server knows about ids and items: fast raw-id lookups, names, categories, search, popularity."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import polars as pl
import torch

from recotorch import errors
from recotorch.data.catalogue import NAME_COLUMNS, natural_title
from recotorch.data.vocab import Vocab

_INT = re.compile(r"^\s*[+-]?\d{1,19}\s*$")


class UnknownIdError(errors.UnknownIdError):
    """A raw user or item id that the model does not know (the API answers 404)."""


class IdMap:
    """Raw id -> row index in O(1) per id, with the coercion of `Vocab.index` ("42" finds 42).

    `Vocab.index` joins through Polars, which costs ~1 ms per call on a small vocabulary and far
    more on a million ids; the request path looks ids up one at a time, so we keep a dict.
    """

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        self.is_integer = vocab.is_integer
        ids = vocab.ids.to_list()
        self._ids = ids
        self._index = {raw: i for i, raw in enumerate(ids)}

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, raw: Any) -> int:
        """Row index of `raw` (int or str), -1 when unknown or not comparable with the vocabulary."""
        if self.is_integer:
            if isinstance(raw, bool):
                return -1
            if isinstance(raw, str):
                if not _INT.match(raw):
                    return -1
                raw = int(raw)
            elif not isinstance(raw, (int, np.integer)):
                return -1
            return self._index.get(int(raw), -1)
        return self._index.get(raw if isinstance(raw, str) else str(raw), -1)

    def index(self, raw: Any, kind: str = "item") -> int:
        """Row index of `raw`, or UnknownIdError naming it."""
        idx = self.get(raw)
        if idx < 0:
            raise UnknownIdError(f"unknown {kind} id: {_show(raw)}")
        return idx

    def indices(self, raws: list[Any], kind: str = "item") -> np.ndarray:
        """Row indices of several ids; UnknownIdError lists (up to five of) the unknown ones."""
        idx = np.fromiter((self.get(r) for r in raws), dtype=np.int64, count=len(raws))
        if (idx < 0).any():
            missing = [_show(r) for r, i in zip(raws, idx, strict=True) if i < 0][:5]
            raise UnknownIdError(f"unknown {kind} id(s): {', '.join(missing)}")
        return idx

    def raw(self, idx: int) -> Any:
        return self._ids[idx]


def _show(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 80 else text[:77] + "..."


MAX_CATEGORIES = 200  # a text column with more distinct values is free text (names, urls), not a category


def category_columns(features: pl.DataFrame) -> list[str]:
    """Columns of `features` that hold categories: lists of text, or text with few distinct values.

    The id, the name column and the year are never categories; a text column whose values
    contain "|" counts as a list ("Comedy|Drama").
    """
    name = next((c for c in NAME_COLUMNS if c in features.columns), None)
    found = []
    for column, dtype in features.schema.items():
        if column in ("id", name, "year"):
            continue
        if isinstance(dtype, pl.List) and (dtype.inner == pl.Utf8 or dtype.inner.is_integer()):
            found.append(column)
        elif dtype == pl.Utf8 or isinstance(dtype, pl.Categorical | pl.Enum):
            values = features[column].cast(pl.Utf8).drop_nulls()
            if values.len() and (values.str.contains("|", literal=True).any()
                                 or values.n_unique() <= min(MAX_CATEGORIES, max(1, values.len() // 2))):
                found.append(column)
    return found


def _as_lists(column: pl.Series) -> pl.Series:
    """A category column as list[str] per item (text split on "|", blanks dropped)."""
    listed = isinstance(column.dtype, pl.List)
    lists = column.cast(pl.List(pl.Utf8)) if listed else column.cast(pl.Utf8).str.split("|")
    return lists.list.eval(pl.element().str.strip_chars().filter(pl.element().str.len_chars() > 0))


class Catalog:
    """Item metadata aligned with the model's item indices: names, years, categories, popularity.

    Names come from the `title` (else `name`) column of the item features; `names` holds them in
    reading order for display, `titles` as stored. Every category column is listed in
    `categories`; the primary one (`genres` when present, else the first) backs the `genre`
    filter of the API and the `genres` field of each item.
    """

    def __init__(self, items: Vocab, features: pl.DataFrame | None, popularity: np.ndarray) -> None:
        self.items = IdMap(items)
        self.popularity = popularity.astype(np.int64)  # (n_items,) training interactions per item
        self.titles: list[str | None] | None = None  # None: the model's data had no such feature
        self.names: list[str | None] | None = None  # titles in reading order, for display
        self.years: list[int | None] | None = None
        self.genres: list[list[str]] | None = None
        self.categories: dict[str, list[str]] = {}  # column -> its sorted distinct values
        self.category_column: str | None = None  # the column behind `genres` and the genre filter
        self._genre_masks: dict[str, torch.Tensor] = {}
        self.genre_names: list[str] = []
        if features is not None and "id" in features.columns:
            aligned = pl.DataFrame({"id": items.ids}).join(features, on="id", how="left", maintain_order="left")
            name = next((c for c in NAME_COLUMNS if c in aligned.columns), None)
            if name is not None:
                self.titles = aligned[name].cast(pl.Utf8).to_list()
                self.names = [None if t is None else natural_title(t) for t in self.titles]
            if "year" in aligned.columns and aligned["year"].dtype.is_integer():
                self.years = aligned["year"].to_list()
            columns = category_columns(aligned)
            lists = {c: _as_lists(aligned[c]) for c in columns}
            for column, values in lists.items():
                self.categories[column] = sorted({str(v) for v in values.explode().drop_nulls().to_list()})
            if columns:
                self.category_column = "genres" if "genres" in columns else columns[0]
                primary = lists[self.category_column]
                self.genres = [g or [] for g in primary.to_list()]
                self._build_genre_masks(primary)
        ids = items.ids.cast(pl.Utf8)
        if self.titles is None:
            self._search = ids.str.to_lowercase()
        else:  # the stored and the reading-order title, so either form is found
            stored = pl.Series(self.titles, dtype=pl.Utf8).fill_null(ids)
            shown = pl.Series(self.names, dtype=pl.Utf8).fill_null(ids)
            self._search = (stored + "\x00" + shown).str.to_lowercase()  # queries never hold NUL
        self._by_popularity = np.argsort(-self.popularity, kind="stable")

    def _build_genre_masks(self, genres: pl.Series) -> None:
        exploded = pl.DataFrame({"idx": np.arange(len(genres)), "genre": genres}).explode("genre").drop_nulls()
        for (name,), group in exploded.group_by("genre", maintain_order=True):
            mask = torch.zeros(len(genres), dtype=torch.bool)
            mask[torch.tensor(group["idx"].to_list(), dtype=torch.int64)] = True
            self._genre_masks[str(name).lower()] = mask
            self.genre_names.append(str(name))
        self.genre_names.sort()

    def genre_mask(self, genre: str) -> torch.Tensor:
        """Items of `genre` (case-insensitive); ValueError names the known genres."""
        mask = self._genre_masks.get(genre.strip().lower())
        if mask is None:
            known = ", ".join(self.genre_names) if self.genre_names else "none (this model has no genres)"
            raise errors.OptionError("genre", f"unknown genre {_show(genre)}; known: {known}")
        return mask

    def describe(self, idx: int) -> dict[str, Any]:
        """The public face of one item: id, title (as stored), name (reading order), year, genres."""
        return {"item": self.items.raw(idx), "title": None if self.titles is None else self.titles[idx],
                "name": None if self.names is None else self.names[idx],
                "year": None if self.years is None else self.years[idx],
                "genres": [] if self.genres is None else self.genres[idx]}

    def title(self, idx: int) -> str | None:
        return None if self.titles is None else self.titles[idx]

    def search(self, query: str, limit: int, offset: int = 0, genre: str | None = None) -> tuple[int, list[int]]:
        """Items whose title (or id) contains `query`, most popular first: (total matches, page of indices)."""
        order = self._by_popularity
        keep = np.ones(len(order), dtype=bool)
        query = query.strip().lower()
        if query:
            keep &= self._search.str.contains(query, literal=True).to_numpy()
        if genre:
            keep &= self.genre_mask(genre).numpy()
        ranked = order[keep[order]]
        return int(ranked.size), ranked[offset : offset + limit].tolist()
