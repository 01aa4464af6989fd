"""Pieces the CLI verbs share: column options, reading the user's files, consoles.

Every file is read by `recotorch.data.readers` (the code Python callers use), with the
options of a verb resolved in this order: a flag given on the command line, else the schema of
the model the verb uses (how its training file was read, `schema.json`), else the defaults
(columns user, item, rating, timestamp; format from the name or detected; a header line).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import polars as pl
import typer
from rich.console import Console

from recotorch.data.interactions import Interactions
from recotorch.data.readers import FORMATS, file_columns, file_layout, read_columns, read_interactions
from recotorch.data.schema import SCHEMA_FILE, FileSchema
from recotorch.errors import InputFileError, OptionError

console = Console(stderr=True)
out = Console()
T = TypeVar("T")

_POSITIONS = " A name, or a 0-based position (--user-col 0) in a file without a header."
_FROM_MODEL = " Default (commands on a model): as its training file was read, else "
UserCol = Annotated[str | None, typer.Option("--user-col", help="Column of user ids." + _POSITIONS
                                             + _FROM_MODEL + "user.", show_default=False)]
ItemCol = Annotated[str | None, typer.Option("--item-col", help="Column of item ids." + _FROM_MODEL + "item.",
                                             show_default=False)]
RatingCol = Annotated[str | None, typer.Option(
    "--rating-col", help="Column of ratings / weights ('' for none)." + _FROM_MODEL + "rating, when present.",
    show_default=False)]
TimeCol = Annotated[str | None, typer.Option(
    "--time-col", help="Column of timestamps ('' for none)." + _FROM_MODEL + "timestamp, when present.",
    show_default=False)]
Sep = Annotated[str | None, typer.Option(
    "--sep", help="Field separator of delimited text: ',', ';', '|', '::', '\\t' or tab (default: from the name, "
                  ".csv or .tsv, else as the model was fitted, else sniffed from the first lines).",
    show_default=False)]
Header = Annotated[bool | None, typer.Option(
    "--header/--no-header", help="Whether the first line of delimited text names the columns (default: as the "
                                 "model was fitted, else yes); without one, give columns as 0-based positions.",
    show_default=False)]
_FORMAT_HELP = (f"Input format: {', '.join(FORMATS)} (default: from the name, .csv .tsv .parquet .jsonl, or the "
                "content; .gz/.zst compression is detected).")
InFormat = Annotated[str | None, typer.Option("--format", "--input-format", help=_FORMAT_HELP, show_default=False)]
# verbs whose --format is the format of their output table
InputFormat = Annotated[str | None, typer.Option("--input-format", help=_FORMAT_HELP, show_default=False)]
Strict = Annotated[bool, typer.Option(help="Make the train/test overlap warning an error.")]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", help="Replace output files that already exist (never an input file).")]


@contextmanager
def user_errors() -> Iterator[None]:
    """Kept for callers not yet updated: errors are handled once, in `recotorch.cli.boundary`."""
    yield


def warn(message: str) -> None:
    """One plain line on stderr (no markup, no wrapping)."""
    sys.stderr.write(message + "\n")


COLUMN_FLAGS = {"user": "--user-col", "item": "--item-col", "rating": "--rating-col", "timestamp": "--time-col"}
_DEFAULTS = {"user": "user", "item": "item", "rating": "rating", "timestamp": "timestamp"}


@dataclass(frozen=True)
class Reading:
    """How one file is read: each role's column (None: not read), the layout, and the option names."""

    path: Path
    columns: dict[str, str | int | None]
    format: str | None  # as given (None: detected by the reader)
    sep: str | None
    has_header: bool
    flags: dict[str, str]
    header_from_model: bool = False  # no header line because the model's training file had none

    def layout(self) -> dict[str, Any]:
        return {"sep": self.sep, "has_header": self.has_header, "format": self.format, "flags": self.flags}

    def schema(self, data: Interactions, **options: Any) -> FileSchema:
        """The schema to store with a model fitted on this file (`options`: fit's data options as given)."""
        fmt, sep = file_layout(self.path, sep=self.sep, format=self.format, flags=self.flags)
        cols = dict(self.columns)
        cols["rating"] = cols["rating"] if data.rating is not None else None
        cols["timestamp"] = cols["timestamp"] if data.timestamp is not None else None
        return FileSchema(cols["user"], cols["item"], cols["rating"], cols["timestamp"], format=fmt,  # type: ignore[arg-type]
                          sep=sep, has_header=self.has_header if fmt in ("csv", "tsv", "text") else True,
                          options={k: v for k, v in options.items() if v is not None})


def parse_sep(sep: str | None) -> str | None:
    """--sep as typed: '\\t' (a shell's backslash-t) and 'tab' mean a tab; 'space' a space."""
    if sep is None:
        return None
    named = {"tab": "\t", "\\t": "\t", "space": " ", "\\s": " "}
    return named.get(sep.lower() if len(sep) > 2 else sep, sep)


def reading(path: Path, roles: dict[str, str | None], *, sep: str | None = None, header: bool | None = None,
            fmt: str | None = None, schema: FileSchema | None = None, format_flag: str = "--format",
            optional: tuple[str, ...] = ("rating", "timestamp")) -> Reading:
    """Resolve the columns (`roles`: role -> flag value or None) and layout of `path`.

    Flags given win, then the model's `schema`, then the defaults. A column that was not given
    as a flag and is absent from the file is not read when its role is `optional`; a flag names
    a column that must exist ('' for none: rating, timestamp).
    """
    flags = {**COLUMN_FLAGS, "sep": "--sep", "has_header": "--no-header", "format": format_flag}
    sep = parse_sep(sep)
    kind, _ = file_layout(path, sep=sep, format=fmt, flags=flags)
    text = kind in ("csv", "tsv", "text")
    from_model = False
    if schema is not None and text:
        if sep is None and fmt is None and kind == "text" and schema.format in ("csv", "tsv", "text"):
            sep = schema.sep
        if header is None:
            header, from_model = schema.has_header, not schema.has_header
    elif header is not None and not text:
        raise OptionError("--header" if header else "--no-header",
                          f"{path} is {'Parquet' if kind == 'parquet' else 'JSON Lines'}, whose columns are named")
    has_header = True if header is None else header
    names = file_columns(path, sep=sep, has_header=has_header, format=fmt, flags=flags)
    stored = schema.columns() if schema is not None else {}
    columns: dict[str, str | int | None] = {}
    for role, given in roles.items():
        flag = COLUMN_FLAGS[role]
        if given is not None and role in optional and given == _DEFAULTS[role] and given not in names:
            given = None  # the default name, as callers pass it: absent means not read
        if given is not None:
            if given == "":
                if role not in ("rating", "timestamp"):
                    raise OptionError(flag, "cannot be empty: name the column")
                columns[role] = None
                continue
            columns[role] = _column(path, flag, given, names, has_header, kind)
            continue
        col = stored.get(role, _DEFAULTS[role]) if schema is not None else _DEFAULTS[role]
        if isinstance(col, str) and not has_header and text:
            if role in optional:
                columns[role] = None  # no header: a default name cannot be found
                continue
            raise OptionError(flag, f"{path} is read without a header line: give the column's 0-based "
                                    f"position, e.g. {flag} {list(roles).index(role)}")
        absent = col is not None and (col not in names if isinstance(col, str) else col >= len(names))
        columns[role] = None if absent and role in optional else col
    return Reading(path, columns, fmt, sep, has_header, flags, header_from_model=from_model)


def _column(path: Path, flag: str, value: str, names: list[str], has_header: bool, kind: str) -> str | int:
    """A column flag's value: a name, or a 0-based position (digits that name no column)."""
    if value.isdigit() and kind != "jsonl" and not (has_header and value in names):
        return int(value)
    if not has_header and kind in ("csv", "tsv", "text"):
        raise OptionError(flag, f"{path} is read without a header line (--no-header), so columns are 0-based "
                                f"positions, not names like {value!r}")
    return value


def unread_columns(reading: Reading) -> list[str]:
    """Columns of the file that the reading leaves out (said, not hidden, by `fit`)."""
    names = file_columns(reading.path, sep=reading.sep, has_header=reading.has_header, format=reading.format,
                         flags=reading.flags)
    used = {names[c] if isinstance(c, int) and c < len(names) else c for c in reading.columns.values()}
    return [n for n in names if n not in used]


def read_data(r: Reading, **options: Any) -> Interactions:
    """Interactions of a resolved reading (`options`: more keywords of `read_interactions`)."""
    c = r.columns
    return read_interactions(r.path, user=c["user"], item=c["item"], rating=c.get("rating"),  # type: ignore[arg-type]
                             timestamp=c.get("timestamp"), **r.layout(), **options)


def read_ids(r: Reading) -> pl.DataFrame:
    """The id column(s) of a pairs/users file in file order, named by role; refused when it has no rows."""
    wanted = {role: col for role, col in r.columns.items() if col is not None}
    frame = read_columns(r.path, wanted, **r.layout())  # type: ignore[arg-type]
    if frame.is_empty():
        raise InputFileError(f"{r.path}: has no rows (expected ids in column(s) {list(wanted.values())})")
    if r.header_from_model and frame.height > 1:  # a header line read as ids: said, not answered
        for col in frame.iter_columns():
            rest = col.slice(1)
            if col.dtype == pl.String and not col[0].lstrip("-").isdigit() and rest.str.contains(r"^-?\d+$").all():
                raise InputFileError(f"{r.path}, line 1: {col[0]!r} looks like a column name, but the model's "
                                     "training file had no header line, so this file is read without one; "
                                     "pass --header (and name the columns)")
    return frame


def model_schema(model: Any, model_dir: Path) -> FileSchema | None:
    """The schema stored with a loaded model (None for model directories written before schemas)."""
    from recotorch.artifacts import read_file

    source = model.artifact_version_ or model_dir
    content = read_file(source, SCHEMA_FILE)
    return None if content is None else FileSchema.from_bytes(content, Path(source) / SCHEMA_FILE)


def read_table(path: Path, user: str | None, item: str | None, rating: str | None, time: str | None,
               *, rating_optional: bool = True, sep: str | None = None, header: bool | None = None,
               fmt: str | None = None, schema: FileSchema | None = None,
               format_flag: str = "--format") -> Interactions:
    """Read interactions with the CLI's column and layout options (see `reading`)."""
    roles = {"user": user, "item": item, "rating": rating, "timestamp": time}
    optional = ("rating", "timestamp") if rating_optional else ("timestamp",)
    return read_data(reading(path, roles, sep=sep, header=header, fmt=fmt, schema=schema,
                             format_flag=format_flag, optional=optional))


def read_id_columns(path: Path, options: dict[str, str]) -> pl.DataFrame:
    """The id column(s) of a pairs/users file in file order; refused when it has no rows.

    `options` maps each column to the CLI option that chose it (named when the column is missing).
    """
    by_flag = {flag: role for role, flag in COLUMN_FLAGS.items()}
    r = reading(path, {by_flag[flag]: column for column, flag in options.items()})
    frame = read_ids(r)
    frame.columns = list(options)
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


def training_pairs_in(model: Any, data: Interactions) -> int:
    """How many rows of `data` are (user, item) pairs in the model's training data (its seen-item sets)."""
    import torch

    users = torch.from_numpy(model.users_.index(data.users.ids).astype("int64"))[data.user_idx]
    items = torch.from_numpy(model.items_.index(data.items.ids).astype("int64"))[data.item_idx]
    known = (users >= 0) & (items >= 0)
    if not bool(known.any()):
        return 0
    seen = model.seen_
    rows = torch.repeat_interleave(torch.arange(seen.n_rows), seen.row_lengths())
    trained = rows * model.n_items + seen.indices
    return int(torch.isin(users[known] * model.n_items + items[known], trained).sum())
