"""Pieces the CLI verbs share: column options, reading files, errors as messages, atomic writes."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import polars as pl
import typer
from rich.console import Console

from recotorch.data.errors import DataError
from recotorch.data.interactions import Interactions
from recotorch.data.readers import read_interactions

console = Console(stderr=True)
out = Console()
T = TypeVar("T")

UserCol = Annotated[str, typer.Option("--user-col", help="Column of user ids.")]
ItemCol = Annotated[str, typer.Option("--item-col", help="Column of item ids.")]
RatingCol = Annotated[str, typer.Option("--rating-col", help="Column of ratings / weights ('' for none).")]
TimeCol = Annotated[str, typer.Option("--time-col", help="Column of timestamps (used when present).")]


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn expected failures (bad files, bad options) into a one-line message and exit code 2."""
    try:
        yield
    except (DataError, FileNotFoundError, ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        console.print(f"[bold red]error:[/] {message}", highlight=False)
        raise typer.Exit(2) from exc


def file_columns(path: Path) -> list[str]:
    """Header names of a CSV/TSV/Parquet file (cheap: reads no rows)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        return list(pl.read_parquet_schema(path))
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    return pl.read_csv(path, n_rows=0, separator=sep).columns


def read_table(path: Path, user: str, item: str, rating: str | None, time: str | None,
               *, rating_optional: bool = True) -> Interactions:
    """Read interactions with the CLI's column options; a default time/rating column may be absent."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    columns = file_columns(path)
    if time and time not in columns and time == "timestamp":
        time = None
    if rating and rating not in columns and rating_optional and rating == "rating":
        rating = None
    return read_interactions(path, user=user, item=item, rating=rating or None, timestamp=time or None)


def write_csv_atomic(frame: pl.DataFrame, path: Path) -> None:
    """Write next to the target and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        frame.write_csv(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    import time

    tic = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - tic


def progress_enabled() -> bool:
    return sys.stderr.isatty()


def only_given(**options: Any) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}
