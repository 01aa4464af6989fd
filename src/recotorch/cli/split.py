"""`split`: cut an interactions file into train / test (and cold) files in the input's format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recotorch.cli import targets
from recotorch.cli.common import ItemCol, Overwrite, RatingCol, TimeCol, UserCol, out, read_table
from recotorch.errors import OptionError

BY = ("random", "time", "user-time", "user-random", "user-last")
TIMED = ("time", "user-time", "user-last")
_SUFFIX = {".csv": ".csv", ".tsv": ".tsv", ".tab": ".tsv", ".data": ".tsv", ".parquet": ".parquet", ".pq": ".parquet"}


def split(
    data_file: Annotated[Path, typer.Argument(help="Interactions file (CSV, TSV or Parquet).")],
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
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    time_col: TimeCol = "timestamp",
    overwrite: Overwrite = False,
) -> None:
    """Write OUT/train, OUT/test and OUT/cold (test rows whose user or item is not in train) and print the counts.

    --by time, user-time and user-last order rows by the time column (ties by file order) and
    are refused without one.
    """
    from recotorch.data import splits
    from recotorch.data.readers import write_interactions

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
    suffix = _SUFFIX.get(data_file.suffix.lower(), ".csv")
    names = ["train", "test", "cold"] + (["valid"] if validation else [])
    paths = {n: out_dir / f"{n}{suffix}" for n in names}
    for path in paths.values():
        targets.output_file(path, inputs=[data_file], overwrite=overwrite)
    data = read_table(data_file, user_col, item_col, rating_col, time_col)
    if by in TIMED and data.timestamp is None:
        raise OptionError("--by", f"{by} orders rows by time, but {data_file} has no time column "
                                  f"{time_col!r} (name it with --time-col)")
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
        write_interactions(parts[name], path)  # type: ignore[arg-type]
    counts = ", ".join(f"{n} {len(parts[n]):,}" for n in names)  # type: ignore[arg-type]
    out.print(f"split {data_file} ({len(data):,} rows) by {by}: {counts} -> {out_dir}", highlight=False)
