"""`recommend` and `similar`: top-k lists from a saved model, in raw ids."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import polars as pl
import torch
import typer

from recotorch.cli import targets
from recotorch.cli.checks import positive
from recotorch.cli.common import (
    Header,
    InputFormat,
    Overwrite,
    Sep,
    UserCol,
    console,
    model_schema,
    out,
    read_ids,
    reading,
    warn,
)
from recotorch.core.topk import top_k
from recotorch.data.catalogue import item_names
from recotorch.errors import OptionError, UnknownIdError
from recotorch.models.base import Estimator

UserOption = Annotated[list[str] | None, typer.Option(
    "--user", help="A user to recommend for (repeatable, or comma-separated): without --out, a table is printed.")]
OutOption = Annotated[Path | None, typer.Option(
    "--out", "-o", help="Table to write: a file (.csv, .parquet, .jsonl) or - for CSV on standard output.")]
Format = Annotated[str | None, targets.FormatOption]


def recommend(
    model_dir: Annotated[Path, typer.Argument(help="Model directory.")],
    out_file: OutOption = None,
    fmt: Format = None,
    k: Annotated[int, typer.Option(help="Items per user.", min=1, max=10_000)] = 20,
    user: UserOption = None,
    history: Annotated[list[str] | None, typer.Option(
        help="Next items for an anonymous user who touched these items, oldest first (repeat the option or "
             "give one comma-separated list); next-item models (sasrec, gru4rec, transitions, knn_last).")] = None,
    users: Annotated[Path | None, typer.Option(help="File with a column of user ids (default: all users).")] = None,
    user_col: UserCol = None,
    sep: Sep = None,
    header: Header = None,
    input_format: InputFormat = None,
    include_seen: Annotated[bool, typer.Option(help="Allow items the user already interacted with (with "
                                                    "--history: repeats of the history's items).")] = False,
    fallback: Annotated[str, typer.Option(
        help="For unknown users: 'error', or 'popular' (the most-interacted items, marked source=popular with "
             "their training count in `popularity` and no model score).")] = "error",
    batch_size: Annotated[int | None, typer.Option(
        help="Users scored per chunk (bounds memory; default: about 16M scores per chunk).")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Top-k items for each user over the whole catalogue; seen items are excluded by default.

    Columns: user, item, rank, score, then name (when the model has a catalogue) and, with
    --fallback popular, source (model or popular) and popularity. --user ID prints a table on
    the terminal unless --out is given; --out - writes CSV to standard output.
    With --history ITEM ..., the next items for one anonymous user from that ordered history.
    """
    from recotorch.artifacts import load

    if history is not None:
        for option, value, default in (("--users", users, None), ("--fallback", fallback, "error"),
                                       ("--batch-size", batch_size, None), ("--user", user, None)):
            if value != default:
                raise OptionError(option, "is not used with --history (one anonymous user)")
        return _recommend_history(model_dir, history, out_file, fmt, k, include_seen, overwrite)
    if user is not None and users is not None:
        raise OptionError("--user", "give users either with --user ID or in a file with --users, not both")
    for option, value in (("--user-col", user_col), ("--sep", sep), ("--header/--no-header", header),
                          ("--input-format", input_format)):
        if value is not None and users is None:
            raise OptionError(option, "is for reading the --users file; give --users FILE")
    if fallback not in ("error", "popular"):
        raise OptionError("--fallback", f"must be 'error' or 'popular', got {fallback!r}")
    positive("--batch-size", batch_size)
    target = targets.table_target(out_file, fmt, inputs=[users] if users else [], overwrite=overwrite,
                                  models=[model_dir])
    if target is None and user is None:
        raise OptionError("--out", "is required (a file, or - for CSV on standard output), unless --user or "
                                   "--history is given")
    model = load(model_dir)
    if user is not None:
        wanted = _given_ids(user, "--user")
    elif users:  # read like the model's training file unless flags say otherwise
        wanted = read_ids(reading(users, {"user": user_col}, sep=sep, header=header, fmt=input_format,
                                  schema=model_schema(model, model_dir), format_flag="--input-format"))
        wanted = wanted["user"].unique(maintain_order=True)
    else:
        wanted = model.users_.ids
    wanted = wanted.alias("user")
    known = torch.from_numpy(model.users_.index(wanted)) >= 0
    unknown = wanted.filter(pl.Series(~known.numpy()))
    if len(unknown) and fallback == "error":
        where = "--user" if user is not None else str(users)
        raise UnknownIdError(f"{where}: {len(unknown)} user id(s) the model does not know, e.g. "
                             f"{unknown.head(5).to_list()}; use --fallback popular to answer them with the "
                             "most popular items")
    present = wanted.filter(pl.Series(known.numpy()))
    if model.users_.is_integer:
        present = present.cast(pl.Int64)
    frame = model.recommend(present, k=k, exclude_seen=not include_seen, batch_size=batch_size).to_frame()
    if fallback == "popular":
        frame = frame.with_columns(pl.lit("model").alias("source"), pl.lit(None, pl.Int64).alias("popularity"))
        if len(unknown):
            popular = _popular(model, unknown, k)
            frame = pl.concat([frame.cast({"user": popular["user"].dtype}, strict=False) if
                               frame["user"].dtype != popular["user"].dtype else frame, popular], how="diagonal")
    frame = _with_names(model, frame)
    if target is None:
        who = f"user {wanted[0]}" if len(wanted) == 1 else _plural(len(wanted), "user")
        out.print(_table(f"Top {k} for {who} ({model.name}, {model_dir})", frame))
    else:
        target.write(frame)
    if len(unknown):
        warn(f"note: {len(unknown):,} unknown user(s) got the most popular items (source=popular, no score)")
    if target is not None:
        _status(target, f"wrote {len(frame):,} recommendations for {len(wanted):,} users -> {target}")


def similar(
    model_dir: Annotated[Path, typer.Argument(help="Model directory.")],
    item: Annotated[str, typer.Argument(help="Item id.")],
    k: Annotated[int, typer.Option(help="How many similar items.", min=1, max=10_000)] = 10,
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="Also write them as a table: a file (.csv, "
                                                  ".parquet, .jsonl) or - for CSV on standard output only.")] = None,
    fmt: Format = None,
    overwrite: Overwrite = False,
) -> None:
    """Items most similar to ITEM (cosine of item vectors, or the model's item-item weights).

    Columns: rank, item, score, then name (when the model has a catalogue).
    """
    from recotorch.artifacts import load

    target = targets.table_target(out_file, fmt, overwrite=overwrite, models=[model_dir])
    model = load(model_dir)
    if model.items_.is_integer and not item.lstrip("-").isdigit():
        raise UnknownIdError(f"item {item!r} is not in the model {model_dir} (its item ids are integers)")
    raw = int(item) if model.items_.is_integer else item
    index = int(model.items_.index([raw])[0])
    if index < 0:
        raise UnknownIdError(f"item {item!r} is not in the model {model_dir}")
    frame = model.similar_items([raw], k=k).to_frame().drop("item").rename({"similar_item": "item"})
    frame = _with_names(model, frame).select("rank", pl.exclude("rank"))
    if target is not None:
        target.write(frame)
        if target.to_stdout:
            return
    names = item_names(model.item_features_)
    shown = f"{item} ({names[index]})" if names is not None and names[index] is not None else item
    out.print(_table(f"Items similar to {shown}", frame))


def _given_ids(values: list[str], option: str) -> pl.Series:
    """Ids given on the command line (repeated or comma-separated) as text; the vocabulary matches "42" to 42."""
    raw = [part.strip() for value in values for part in value.split(",")]
    if not raw or any(not part for part in raw):
        raise OptionError(option, f"has an empty id in {values}")
    return pl.Series("user", list(dict.fromkeys(raw)), dtype=pl.Utf8)


def _with_names(model: Estimator, frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with a `name` column after `score` when the model's catalogue has names."""
    names = item_names(model.item_features_)
    if names is None:
        return frame
    shown = names.gather(model.items_.index(frame["item"]))
    columns = frame.columns
    at = columns.index("score") + 1
    return frame.with_columns(shown.alias("name")).select(*columns[:at], "name", *columns[at:])


def _table(title: str, frame: pl.DataFrame):
    from rich.table import Table

    table = Table(title=title)
    for col in frame.columns:
        table.add_column(col, justify="right" if frame.schema[col].is_numeric() else "left")
    for row in frame.iter_rows():
        table.add_row(*("" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    return table


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _status(target: targets.TableTarget, message: str) -> None:
    """A status line: on stderr when the table itself goes to standard output."""
    (console if target.to_stdout else out).print(message, highlight=False)


def _popular(model: Estimator, users: pl.Series, k: int) -> pl.DataFrame:
    """The most-interacted items (in training), the same list for every unknown user: no model score."""
    counts = torch.bincount(model.seen_.indices, minlength=model.n_items)
    top, _ = top_k(counts[None].float(), min(k, model.n_items))
    idx = top[0]
    n = len(users)
    return pl.DataFrame({
        "user": users.gather(np.repeat(np.arange(n), idx.numel())),
        "item": model.items_.ids.gather(idx.repeat(n).numpy()),
        "rank": torch.arange(1, idx.numel() + 1).repeat(n).numpy(),
        "score": pl.Series([None] * (n * idx.numel()), dtype=pl.Float32),
        "source": ["popular"] * (n * idx.numel()),
        "popularity": counts[idx].repeat(n).numpy().astype(np.int64),
    })


def _recommend_history(model_dir: Path, history: list[str], out_file: Path | None, fmt: str | None, k: int,
                       include_seen: bool, overwrite: bool) -> None:
    """`recommend --history`: next items from an ordered list of raw item ids."""
    from recotorch.artifacts import load

    target = targets.table_target(out_file, fmt, overwrite=overwrite, models=[model_dir])
    model = load(model_dir)
    if not model.supports("next_items"):
        raise OptionError("--history", f"needs a next-item model (sasrec, gru4rec, transitions, knn_last); "
                                       f"{model_dir} holds {model.name!r}")
    raw = [part.strip() for value in history for part in value.split(",")]
    if not raw or any(not part for part in raw):
        raise OptionError("--history", f"has an empty item id in {history}")
    if model.items_.is_integer:
        bad = [p for p in raw if not p.lstrip("-").isdigit()]
        if bad:
            raise UnknownIdError(f"--history: item(s) {bad[:5]} are not in the model {model_dir} (its item ids "
                                 "are integers)")
        ids: list = [int(p) for p in raw]
    else:
        ids = raw
    unknown = [raw[j] for j, i in enumerate(model.items_.index(ids)) if i < 0]
    if unknown:
        raise UnknownIdError(f"--history: item(s) {unknown[:5]} are not in the model {model_dir}")
    frame = _with_names(model, model.recommend_history(ids, k=k, exclude_seen=not include_seen).to_frame().drop("user"))
    if target is not None:
        target.write(frame)
        _status(target, f"wrote {len(frame):,} next items for a history of {len(ids)} -> {target}")
        return
    for row in frame.iter_rows(named=True):
        out.print(f"{row['rank']}\t{row['item']}\t{row['score']:.4f}", highlight=False)
