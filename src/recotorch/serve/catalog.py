"""What the server knows about ids and items: fast raw-id lookups, titles, genres, search, popularity."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import polars as pl
import torch

from recotorch import errors
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


class Catalog:
    """Item metadata aligned with the model's item indices: titles, years, genres, popularity."""

    def __init__(self, items: Vocab, features: pl.DataFrame | None, popularity: np.ndarray) -> None:
        self.items = IdMap(items)
        self.popularity = popularity.astype(np.int64)  # (n_items,) training interactions per item
        self.titles: list[str | None] | None = None  # None: the model's data had no such feature
        self.years: list[int | None] | None = None
        self.genres: list[list[str]] | None = None
        self._genre_masks: dict[str, torch.Tensor] = {}
        self.genre_names: list[str] = []
        if features is not None and "id" in features.columns:
            aligned = pl.DataFrame({"id": items.ids}).join(features, on="id", how="left", maintain_order="left")
            if "title" in aligned.columns:
                self.titles = aligned["title"].cast(pl.Utf8).to_list()
            if "year" in aligned.columns and aligned["year"].dtype.is_integer():
                self.years = aligned["year"].to_list()
            if "genres" in aligned.columns and isinstance(aligned["genres"].dtype, pl.List):
                self.genres = [g or [] for g in aligned["genres"].to_list()]
                self._build_genre_masks(aligned["genres"])
        ids = items.ids.cast(pl.Utf8)
        titles = ids if self.titles is None else pl.Series(self.titles, dtype=pl.Utf8).fill_null(ids)
        self._search = titles.str.to_lowercase()
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
        """The public face of one item: id, title, year, genres."""
        return {"item": self.items.raw(idx), "title": None if self.titles is None else self.titles[idx],
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
