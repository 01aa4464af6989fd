"""`split`: cut an interactions file into train / test (and cold) files in the input's layout.

The files keep the input's format, separator, header (or its absence) and column names or
positions, so every command reads them with the same options as the input. Every row is
split as it is (repeated (user, item) rows are not aggregated here).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import polars as pl
import typer

from recotorch.cli import targets
from recotorch.cli.common import (
    Header,
    InFormat,
    ItemCol,
    Overwrite,
    RatingCol,
    Reading,
    Sep,
    TimeCol,
    UserCol,
    out,
    read_data,
    reading,
)
from recotorch.data.interactions import Interactions
from recotorch.data.readers import file_columns, file_layout
from recotorch.errors import OptionError
from recotorch.outputs import write_file_atomic

BY = ("random", "time", "user-time", "user-random", "user-last")
TIMED = ("time", "user-time", "user-last")
_SUFFIX_BY_FORMAT = {"csv": ".csv", "tsv": ".tsv", "text": ".txt", "parquet": ".parquet", "jsonl": ".jsonl"}
_COMPRESSION = (".gz", ".gzip", ".zst", ".zstd")


def split(
    data_file: Annotated[Path, typer.Argument(help="Interactions file (CSV, TSV, other delimited text, Parquet or "
                                              "JSON Lines; .gz/.zst too).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for train, test and cold files.")],
    by: Annotated[str, typer.Option(help="random: rows at random; time: the latest rows overall; user-time: "
                                    "each user's latest fraction; user-random: a random fraction of each user; "
                                    "user-last: each user's last item (leave-one-out, for next-item models).")
                  ] = "random",
    test_frac: Annotated[float | None, typer.Option(help="Fraction held out (random, time, user-time, "
                                                    "user-random; default 0.2).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the random splits (default 0).")] = None,
    validation: Annotated[bool, typer.Option(help="user-last: also write valid (each user's second-to-last "
                                             "item), taken out of train.")] = False,
    user_col: UserCol = None,
    item_col: ItemCol = None,
    rating_col: RatingCol = None,
    time_col: TimeCol = None,
    sep: Sep = None,
    header: Header = None,
    fmt: InFormat = None,
    overwrite: Overwrite = False,
) -> None:
    """Write OUT/train, OUT/test and OUT/cold (test rows whose user or item is not in train) and print the counts.

    The files keep the input's layout (format, separator, header, column names or positions; a
    compressed input is written uncompressed). --by time, user-time and user-last order rows by
    the time column (ties by file order) and are refused without one.
    """
    from recotorch.data import splits

    if by not in BY:
        raise OptionError("--by", f"must be one of {', '.join(BY)}, got {by!r}")
    if test_frac is not None and by == "user-last":
        raise OptionError("--test-frac", "is not used by --by user-last (the test set is each user's last item)")
    if test_frac is not None and not 0.0 < test_frac < 1.0:
        raise OptionError("--test-frac", f"must be between 0 and 1 (exclusive), got {test_frac}")
    if seed is not None and by not in ("random", "user-random"):
        raise OptionError("--seed", f"is only used by the random splits, not --by {by}")
    if validation and by != "user-last":
        raise OptionError("--validation", "goes with --by user-last")
    how = reading(data_file, {"user": user_col, "item": item_col, "rating": rating_col, "timestamp": time_col},
                  sep=sep, header=header, fmt=fmt)
    suffix = _out_suffix(data_file, how)
    names = ["train", "test", "cold"] + (["valid"] if validation else [])
    paths = {n: out_dir / f"{n}{suffix}" for n in names}
    for path in paths.values():
        targets.output_file(path, inputs=[data_file], overwrite=overwrite)
    data = read_data(how, duplicates="keep")
    if by in TIMED and data.timestamp is None:
        raise OptionError("--by", f"{by} orders rows by time, but {data_file} has no time column "
                                  f"{time_col or 'timestamp'!r} (name it with --time-col)")
    frac, seed = 0.2 if test_frac is None else test_frac, 0 if seed is None else seed
    valid = None
    if by == "random":
        result = splits.random(data, frac, seed)
    elif by == "time":
        result = splits.temporal(data, frac)
    elif by == "user-time":
        result = splits.last_fraction(data, frac, min_rows=2)
    elif by == "user-random":
        result = splits.random_per_user(data, frac, min_rows=2, seed=seed)
    elif validation:
        result, valid = splits.user_last(data, validation=True)
    else:
        result = splits.user_last(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = {"train": result.train, "test": result.test, "cold": result.cold, "valid": valid}
    for name, path in paths.items():
        _write_like(parts[name], path, how)  # type: ignore[arg-type]
    counts = ", ".join(f"{n} {len(parts[n]):,}" for n in names)  # type: ignore[arg-type]
    out.print(f"split {data_file} ({len(data):,} rows) by {by}: {counts} -> {out_dir}", highlight=False)


def _out_suffix(data_file: Path, how: Reading) -> str:
    """The input's own suffix (compression dropped) when it names a format, else one for its format."""
    fmt, _ = file_layout(data_file, sep=how.sep, format=how.format, flags=how.flags)
    suffixes = [x.lower() for x in data_file.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes.pop()
    own = suffixes[-1] if suffixes else ""
    if how.format is None and re.fullmatch(r"\.[a-z0-9]{1,8}", own):
        return own
    return _SUFFIX_BY_FORMAT[fmt]


def _write_like(part: Interactions, path: Path, how: Reading) -> None:
    """Write `part` in the layout `how` read the input: the same format, separator, header and columns."""
    fmt, sep = file_layout(how.path, sep=how.sep, format=how.format, flags=how.flags)
    frame = part.to_frame()
    roles = [role for role, col in how.columns.items() if col is not None and role in frame.columns]
    names = file_columns(how.path, sep=how.sep, has_header=how.has_header, format=how.format, flags=how.flags)
    if fmt == "parquet" or fmt == "jsonl" or how.has_header:
        named = {role: names[c] if isinstance(c, int) else c for role, c in how.columns.items() if role in roles}
        frame = frame.select(pl.col(role).alias(named[role]) for role in roles)  # type: ignore[arg-type]
        if fmt == "parquet":
            write_file_atomic(path, lambda tmp: frame.write_parquet(tmp))
            return
        if fmt == "jsonl":
            write_file_atomic(path, lambda tmp: frame.write_ndjson(tmp))
            return
    else:  # no header: each column at its position, positions no role reads left empty
        at = {int(how.columns[role]): role for role in roles}  # type: ignore[arg-type]
        frame = frame.select(pl.col(at[k]).alias(f"c{k}") if k in at else pl.lit(None, pl.String).alias(f"c{k}")
                             for k in range(max(at) + 1))
    _write_text(frame, path, sep or ",", how.has_header)


def _write_text(frame: pl.DataFrame, path: Path, sep: str, header: bool) -> None:
    if len(sep) == 1:
        write_file_atomic(path, lambda tmp: frame.write_csv(tmp, separator=sep, include_header=header))
        return
    lines = frame.select(pl.concat_str([pl.col(c).cast(pl.String).fill_null("") for c in frame.columns],
                                       separator=sep).alias("line"))["line"]
    text = (sep.join(frame.columns) + "\n" if header else "") + "".join(line + "\n" for line in lines)
    write_file_atomic(path, lambda tmp: tmp.write_text(text))
