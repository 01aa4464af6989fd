"""`recotorch synth`: write a synthetic interaction log for benchmarks and scale tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recotorch.cli.common import Overwrite, out, timed
from recotorch.cli.targets import output_file
from recotorch.errors import OptionError


def synth(
    out_file: Annotated[Path, typer.Argument(help="File to write: .csv or .parquet.")],
    users: Annotated[int, typer.Option(help="Number of users.", min=1)] = 140_000,
    items: Annotated[int, typer.Option(help="Number of items.", min=1)] = 27_000,
    rows: Annotated[int, typer.Option(help="Number of interactions (user, item, rating, timestamp).", min=1)]
    = 20_000_000,
    dim: Annotated[int, typer.Option(help="Rank of the planted model behind the ratings.", min=1)] = 16,
    seed: Annotated[int, typer.Option(help="Random seed (same arguments, same file).", min=0)] = 0,
    overwrite: Overwrite = False,
) -> None:
    """Power-law users and items, ratings from a planted low-rank model (recotorch.data.synthetic)."""
    from recotorch.data.synthetic import synth as write_synthetic

    if out_file.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise OptionError("OUT_FILE", f"{out_file}: the name must end in .csv, .parquet or .pq")
    output_file(out_file, overwrite=overwrite, option="OUT_FILE")
    path, seconds = timed(lambda: write_synthetic(out_file, users, items, rows, seed=seed, dim=dim))
    out.print(f"wrote {rows:,} interactions ({users:,} users, {items:,} items) in {seconds:.1f} s -> {path}",
              highlight=False)
