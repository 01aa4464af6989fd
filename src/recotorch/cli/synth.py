"""`recotorch synth`: write a synthetic interaction log for benchmarks and scale tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recotorch.cli.common import out, timed, user_errors


def synth(
    out_file: Annotated[Path, typer.Argument(help="File to write: .csv or .parquet.")],
    users: Annotated[int, typer.Option(help="Number of users.", min=1)] = 140_000,
    items: Annotated[int, typer.Option(help="Number of items.", min=1)] = 27_000,
    rows: Annotated[int, typer.Option(help="Number of interactions (user, item, rating, timestamp).", min=1)]
    = 20_000_000,
    dim: Annotated[int, typer.Option(help="Rank of the planted model behind the ratings.", min=1)] = 16,
    seed: Annotated[int, typer.Option(help="Random seed (same arguments, same file).")] = 0,
) -> None:
    """Power-law users and items, ratings from a planted low-rank model (recotorch.data.synthetic)."""
    from recotorch.data.synthetic import synth as write_synthetic

    with user_errors():
        path, seconds = timed(lambda: write_synthetic(out_file, users, items, rows, seed=seed, dim=dim))
    out.print(f"wrote {rows:,} interactions ({users:,} users, {items:,} items) in {seconds:.1f} s -> {path}")
