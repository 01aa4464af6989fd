"""Pieces the CLI verbs share: column options, reading the user's files, consoles."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import polars as pl
import typer
from rich.console import Console

from recotorch.data.interactions import Interactions
from recotorch.data.readers import file_columns, read_columns, read_interactions
from recotorch.errors import InputFileError

console = Console(stderr=True)
out = Console()
T = TypeVar("T")

UserCol = Annotated[str, typer.Option("--user-col", help="Column of user ids.")]
ItemCol = Annotated[str, typer.Option("--item-col", help="Column of item ids.")]
RatingCol = Annotated[str, typer.Option("--rating-col", help="Column of ratings / weights ('' for none).")]
TimeCol = Annotated[str, typer.Option("--time-col", help="Column of timestamps (used when present).")]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", help="Replace output files that already exist (never an input file).")]


@contextmanager
def user_errors() -> Iterator[None]:
    """Kept for callers not yet updated: errors are handled once, in `recotorch.cli.boundary`."""
    yield


def warn(message: str) -> None:
    """One plain line on stderr (no markup, no wrapping)."""
    sys.stderr.write(message + "\n")


def read_table(path: Path, user: str, item: str, rating: str | None, time: str | None,
               *, rating_optional: bool = True) -> Interactions:
    """Read interactions with the CLI's column options; a default time/rating column may be absent."""
    names = file_columns(path)
    if time and time == "timestamp" and time not in names:
        time = None
    if rating and rating_optional and rating == "rating" and rating not in names:
        rating = None
    return read_interactions(path, user=user, item=item, rating=rating or None, timestamp=time or None)


def read_id_columns(path: Path, options: dict[str, str]) -> pl.DataFrame:
    """The id column(s) of a pairs/users file in file order; refused when it has no rows.

    `options` maps each column to the CLI option that chose it (named when the column is missing).
    """
    names = file_columns(path)
    for column, option in options.items():
        if column not in names:
            raise InputFileError(f"{path}: no column {column!r} (choose it with {option}); the file has {names}")
    frame = read_columns(path, list(options))
    if frame.is_empty():
        raise InputFileError(f"{path}: has no rows (expected ids in column(s) {list(options)})")
    return frame


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    import time

    tic = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - tic


def progress_enabled() -> bool:
    return sys.stderr.isatty()


def only_given(**options: Any) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}
