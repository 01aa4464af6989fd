"""Feature encoders: a dataset's item and user metadata as weighted tokens, and tokens as sparse rows.

`item_tokens` reads the MovieLens-style item columns (genres, year, title), `user_tokens` the
demographic columns (age bands from `recotorch.data.demographics`, gender, occupation); a model
with side features (`recotorch.models.hybrid.HybridMF`) turns the kept tokens into CSR rows with
`feature_rows`. Which groups are used is configured from the dataset's columns: a group whose
column is absent yields no tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import torch

from recotorch.data.demographics import DEMOGRAPHIC_GROUPS, age_band_expr
from recotorch.data.interactions import CSR

__all__ = ["ITEM_GROUPS", "STOPWORDS", "USER_GROUPS", "feature_rows", "item_tokens", "token_vocabulary",
           "user_tokens"]

STOPWORDS = frozenset(("the", "a", "an", "of", "and", "in", "on", "to", "for", "with", "from", "at", "by", "is",
                       "it", "its", "de", "la", "le", "les", "el", "der", "die", "das"))
ITEM_GROUPS = ("genres", "year", "title")
USER_GROUPS = DEMOGRAPHIC_GROUPS


def item_tokens(frame: pl.DataFrame, groups: Sequence[str] = ITEM_GROUPS) -> pl.DataFrame:
    """Long format (row, token, weight) of an item feature frame's rows.

    genres -> "genre:Drama" (weight 1/sqrt(#genres)); year -> "year:1990s" (decades, "year:<1950"
    before); title -> "word:star" for lowercase words of >= 2 characters minus stop words
    (weight 1/sqrt(#words)).
    """
    rows = frame.with_row_index("row")
    parts = []
    if "genres" in groups and "genres" in frame.columns:
        parts.append(rows.select("row", pl.col("genres").alias("token")).explode("token")
                     .with_columns((pl.lit("genre:") + pl.col("token")).alias("token")))
    if "year" in groups and "year" in frame.columns:
        decade = (pl.col("year") // 10 * 10).cast(pl.String) + "s"
        year = pl.when(pl.col("year") < 1950).then(pl.lit("<1950")).otherwise(decade)
        parts.append(rows.select("row", (pl.lit("year:") + year).alias("token")))
    if "title" in groups and "title" in frame.columns:
        words = pl.col("title").str.to_lowercase().str.extract_all(r"[a-z0-9]+").alias("token")
        parts.append(rows.select("row", words).explode("token")
                     .filter(pl.col("token").str.len_chars() >= 2, ~pl.col("token").is_in(list(STOPWORDS)))
                     .with_columns((pl.lit("word:") + pl.col("token")).alias("token")))
    return _weighted(parts)


def user_tokens(frame: pl.DataFrame, groups: Sequence[str] = USER_GROUPS) -> pl.DataFrame:
    """Long format (row, token, weight) of a user feature frame: "age:25-34", "gender:M", "occupation:..."."""
    rows = frame.with_row_index("row")
    parts = []
    for group in groups:
        if group in frame.columns:
            value = age_band_expr(pl.col("age")) if group == "age" else pl.col(group).cast(pl.String)
            parts.append(rows.select("row", (pl.lit(f"{group}:") + value).alias("token")))
    return _weighted(parts)


def _weighted(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Concatenate groups, drop nulls/duplicates; each group's weights in a row are 1/sqrt(count)."""
    empty = pl.DataFrame(schema={"row": pl.UInt32, "token": pl.String, "weight": pl.Float32})
    if not parts:
        return empty
    long = pl.concat(parts).drop_nulls().unique(maintain_order=True)
    group = pl.col("token").str.split(":").list.first()
    return long.with_columns((1.0 / pl.len().over("row", group).sqrt()).cast(pl.Float32).alias("weight"))


def feature_rows(tokens: pl.DataFrame, names: list[str], n_rows: int) -> CSR:
    """CSR (n_rows x features) of the tokens that are in `names`, values = weights."""
    lookup = pl.DataFrame({"token": pl.Series(names, dtype=pl.String),
                           "feature": np.arange(len(names), dtype=np.int64)})
    hit = tokens.join(lookup, on="token", how="inner").sort("row", "feature")
    rows = torch.from_numpy(hit["row"].cast(pl.Int64).to_numpy(writable=True))
    indptr = torch.zeros(n_rows + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(rows, minlength=n_rows), 0, out=indptr[1:])
    return CSR(indptr, torch.from_numpy(hit["feature"].to_numpy(writable=True)),
               torch.from_numpy(hit["weight"].to_numpy(writable=True)))


def token_vocabulary(tokens: pl.DataFrame, min_count: int) -> list[str]:
    """The tokens of at least `min_count` rows, sorted."""
    counts = tokens.group_by("token").agg(pl.len().alias("n")).filter(pl.col("n") >= min_count)
    return counts.sort("token")["token"].to_list()
