"""Demographic user features (age, gender, occupation, as MovieLens has them): age bands and one-hot designs.

Used by the fold-in's demographic prior, demographic popularity and the hybrid model's user tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import torch

DEMOGRAPHIC_GROUPS = ("age", "gender", "occupation")  # age enters as its MovieLens-1M band
AGE_BANDS = ((18, "<18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49"), (56, "50-55"))

__all__ = ["AGE_BANDS", "DEMOGRAPHIC_GROUPS", "age_band", "age_band_expr", "demographic_design"]


def age_band(age: int | None) -> str | None:
    """The MovieLens-1M age groups: "<18", "18-24", ..., "56+" (None stays None)."""
    if age is None:
        return None
    return next((name for limit, name in AGE_BANDS if age < limit), "56+")


def age_band_expr(age: pl.Expr) -> pl.Expr:
    """`age_band` as a Polars expression (nulls stay null)."""
    expr = pl.when(age.is_not_null()).then(pl.lit("56+"))
    for limit, name in reversed(AGE_BANDS):
        expr = pl.when(age < limit).then(pl.lit(name)).otherwise(expr)
    return expr


def demographic_design(frame: pl.DataFrame, levels: Sequence[tuple[str, str]] | None = None
                       ) -> tuple[torch.Tensor, list[tuple[str, str]]]:
    """One-hot design (n, len(levels)) of age band, gender and occupation, and its (column, value) levels.

    Without `levels` they are read from `frame` (sorted); values outside them, nulls and missing
    columns give all-zero entries, i.e. the population average for that group.
    """
    as_band = age_band_expr(pl.col("age").cast(pl.Int64, strict=False))
    cols = {c: (as_band if c == "age" else pl.col(c).cast(pl.Utf8)).alias(c)
            for c in DEMOGRAPHIC_GROUPS if c in frame.columns}
    values = frame.select(list(cols.values())) if cols else pl.DataFrame()
    if levels is None:
        levels = [(c, v) for c in cols for v in values[c].drop_nulls().unique().sort().to_list()]
    out = torch.zeros(len(frame), len(levels))
    for col in cols:  # one vectorised lookup per group: value -> column of `levels` (-1 = none)
        column = {v: j for j, (c, v) in enumerate(levels) if c == col}
        codes = values[col].replace_strict(column, default=-1, return_dtype=pl.Int64).fill_null(-1)
        code = torch.from_numpy(codes.to_numpy(writable=True))
        hit = code >= 0
        out[torch.arange(len(frame))[hit], code[hit]] = 1.0
    return out, list(levels)
