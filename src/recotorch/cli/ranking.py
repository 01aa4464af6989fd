"""`recommend` and `similar`: top-k lists from a saved model, in raw ids."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import polars as pl
import torch
import typer

from recotorch.cli.common import UserCol, console, file_columns, out, user_errors, write_csv_atomic
from recotorch.models.base import Estimator


def recommend(
    model_dir: Annotated[Path, typer.Argument(help="Model directory.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="CSV to write: user,item,rank,score.")],
    k: Annotated[int, typer.Option(help="Items per user.", min=1, max=10_000)] = 20,
    users: Annotated[Path | None, typer.Option(help="File with a column of user ids (default: all users).")] = None,
    user_col: UserCol = "user",
    include_seen: Annotated[bool, typer.Option(help="Allow items the user already interacted with.")] = False,
    fallback: Annotated[str, typer.Option(help="For unknown users: 'error' or 'popular'.")] = "error",
    batch_size: Annotated[int | None, typer.Option(
        help="Users scored per chunk (bounds memory; default: about 16M scores per chunk).")] = None,
) -> None:
    """Top-k items for each user over the whole catalogue; seen items are excluded by default."""
    from recotorch.artifacts import load

    with user_errors():
        if fallback not in ("error", "popular"):
            raise ValueError(f"--fallback must be 'error' or 'popular', got {fallback!r}")
        model = load(model_dir)
        wanted = _read_users(users, user_col) if users else model.users_.ids
        known = torch.from_numpy(model.users_.index(wanted)) >= 0
        unknown = wanted.filter(pl.Series(~known.numpy()))
        if len(unknown) and fallback == "error":
            raise KeyError(f"{len(unknown)} unknown user id(s), e.g. {unknown.head(5).to_list()}; "
                           "use --fallback popular to answer them with the most popular items")
        recs = model.recommend(wanted.filter(pl.Series(known.numpy())), k=k, exclude_seen=not include_seen,
                               batch_size=batch_size)
        frame = recs.to_frame()
        if len(unknown):
            frame = pl.concat([frame, _popular(model, unknown, k, frame.schema)])
        write_csv_atomic(frame, out_file)
    if len(unknown):
        console.print(f"[yellow]note:[/] {len(unknown):,} unknown user(s) got the most popular items")
    out.print(f"wrote {len(frame):,} recommendations for {len(wanted):,} users -> {out_file}")


def similar(
    model_dir: Annotated[Path, typer.Argument(help="Model directory.")],
    item: Annotated[str, typer.Argument(help="Item id.")],
    k: Annotated[int, typer.Option(help="How many similar items.", min=1, max=10_000)] = 10,
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="Also write them to this CSV.")] = None,
) -> None:
    """Items most similar to ITEM (cosine of item vectors, or the model's item-item weights)."""
    from recotorch.artifacts import load
    from recotorch.explain.embeddings import item_labels

    with user_errors():
        model = load(model_dir)
        raw = int(item) if model.items_.is_integer and item.lstrip("-").isdigit() else item
        recs = model.similar_items([raw], k=k)
        frame = recs.to_frame().drop("user")
        titles = item_labels(model).gather(model.items_.index(frame["item"]))
        frame = frame.with_columns(titles.alias("title")).select("rank", "item", "title", "score")
        if out_file is not None:
            write_csv_atomic(frame, out_file)
    from rich.table import Table

    table = Table(title=f"Items similar to {item} ({item_labels(model)[int(model.items_.index([raw])[0])]})")
    for col in frame.columns:
        table.add_column(col)
    for row in frame.iter_rows():
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    out.print(table)


def _read_users(path: Path, user_col: str) -> pl.Series:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    columns = file_columns(path)
    if user_col not in columns:
        raise ValueError(f"{path}: missing column {user_col!r}; the file has {columns}")
    if path.suffix.lower() in (".parquet", ".pq"):
        frame = pl.read_parquet(path, columns=[user_col])
    else:
        frame = pl.read_csv(path, columns=[user_col], separator="\t" if path.suffix.lower() == ".tsv" else ",")
    return frame[user_col].unique(maintain_order=True).alias("user")


def _popular(model: Estimator, users: pl.Series, k: int, schema: pl.Schema) -> pl.DataFrame:
    """The most-interacted items (in training), the same list for every unknown user."""
    counts = torch.bincount(model.seen_.indices, minlength=model.n_items).float()
    scores, idx = torch.topk(counts, min(k, model.n_items))
    n = len(users)
    return pl.DataFrame({
        "user": users.gather(np.repeat(np.arange(n), idx.numel())),
        "item": model.items_.ids.gather(idx.repeat(n).numpy()),
        "rank": torch.arange(1, idx.numel() + 1).repeat(n).numpy(),
        "score": scores.repeat(n).numpy(),
    }).cast(dict(schema), strict=False)
