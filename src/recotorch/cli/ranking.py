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
from recotorch.cli.common import Overwrite, UserCol, out, read_id_columns, warn
from recotorch.core.topk import top_k
from recotorch.errors import OptionError, UnknownIdError
from recotorch.models.base import Estimator


def recommend(
    model_dir: Annotated[Path, typer.Argument(help="Model directory.")],
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="CSV to write: user,item,rank,score "
                                                  "(optional with --history: printed otherwise).")] = None,
    k: Annotated[int, typer.Option(help="Items per user.", min=1, max=10_000)] = 20,
    history: Annotated[list[str] | None, typer.Option(
        help="Next items for an anonymous user who touched these items, oldest first (repeat the option or "
             "give one comma-separated list); next-item models (sasrec, gru4rec, transitions, knn_last).")] = None,
    users: Annotated[Path | None, typer.Option(help="File with a column of user ids (default: all users).")] = None,
    user_col: UserCol = "user",
    include_seen: Annotated[bool, typer.Option(help="Allow items the user already interacted with.")] = False,
    fallback: Annotated[str, typer.Option(help="For unknown users: 'error' or 'popular'.")] = "error",
    batch_size: Annotated[int | None, typer.Option(
        help="Users scored per chunk (bounds memory; default: about 16M scores per chunk).")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Top-k items for each user over the whole catalogue; seen items are excluded by default.

    With --history ITEM ..., the next items for one anonymous user from that ordered history.
    """
    from recotorch.artifacts import load

    if history is not None:
        for option, value, default in (("--users", users, None), ("--fallback", fallback, "error"),
                                       ("--batch-size", batch_size, None)):
            if value != default:
                raise OptionError(option, "is not used with --history (one anonymous user)")
        return _recommend_history(model_dir, history, out_file, k, include_seen, overwrite)
    if out_file is None:
        raise OptionError("--out", "is required (the CSV to write), unless --history is given")
    if fallback not in ("error", "popular"):
        raise OptionError("--fallback", f"must be 'error' or 'popular', got {fallback!r}")
    positive("--batch-size", batch_size)
    targets.output_file(out_file, inputs=[users] if users else [], overwrite=overwrite, models=[model_dir])
    model = load(model_dir)
    wanted = read_id_columns(users, {user_col: "--user-col"})[user_col].unique(maintain_order=True).alias(
        "user") if users else model.users_.ids
    known = torch.from_numpy(model.users_.index(wanted)) >= 0
    unknown = wanted.filter(pl.Series(~known.numpy()))
    if len(unknown) and fallback == "error":
        raise UnknownIdError(f"{users}: {len(unknown)} user id(s) the model does not know, e.g. "
                             f"{unknown.head(5).to_list()}; use --fallback popular to answer them with the "
                             "most popular items")
    recs = model.recommend(wanted.filter(pl.Series(known.numpy())), k=k, exclude_seen=not include_seen,
                           batch_size=batch_size)
    frame = recs.to_frame()
    if len(unknown):
        frame = pl.concat([frame, _popular(model, unknown, k, frame.schema)])
    targets.write_csv(frame, out_file)
    if len(unknown):
        warn(f"note: {len(unknown):,} unknown user(s) got the most popular items")
    out.print(f"wrote {len(frame):,} recommendations for {len(wanted):,} users -> {out_file}", highlight=False)


def similar(
    model_dir: Annotated[Path, typer.Argument(help="Model directory.")],
    item: Annotated[str, typer.Argument(help="Item id.")],
    k: Annotated[int, typer.Option(help="How many similar items.", min=1, max=10_000)] = 10,
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="Also write them to this CSV.")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Items most similar to ITEM (cosine of item vectors, or the model's item-item weights)."""
    from recotorch.artifacts import load
    from recotorch.explain.embeddings import item_labels

    if out_file is not None:
        targets.output_file(out_file, overwrite=overwrite, models=[model_dir])
    model = load(model_dir)
    if model.items_.is_integer and not item.lstrip("-").isdigit():
        raise UnknownIdError(f"item {item!r} is not in the model {model_dir} (its item ids are integers)")
    raw = int(item) if model.items_.is_integer else item
    if int(model.items_.index([raw])[0]) < 0:
        raise UnknownIdError(f"item {item!r} is not in the model {model_dir}")
    recs = model.similar_items([raw], k=k)
    frame = recs.to_frame().drop("item").rename({"similar_item": "item"})
    titles = item_labels(model).gather(model.items_.index(frame["item"]))
    frame = frame.with_columns(titles.alias("title")).select("rank", "item", "title", "score")
    if out_file is not None:
        targets.write_csv(frame, out_file)
    from rich.table import Table

    table = Table(title=f"Items similar to {item} ({item_labels(model)[int(model.items_.index([raw])[0])]})")
    for col in frame.columns:
        table.add_column(col)
    for row in frame.iter_rows():
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    out.print(table)


def _popular(model: Estimator, users: pl.Series, k: int, schema: pl.Schema) -> pl.DataFrame:
    """The most-interacted items (in training), the same list for every unknown user."""
    counts = torch.bincount(model.seen_.indices, minlength=model.n_items).float()
    top, best = top_k(counts[None], min(k, model.n_items))
    idx, scores = top[0], best[0]
    n = len(users)
    return pl.DataFrame({
        "user": users.gather(np.repeat(np.arange(n), idx.numel())),
        "item": model.items_.ids.gather(idx.repeat(n).numpy()),
        "rank": torch.arange(1, idx.numel() + 1).repeat(n).numpy(),
        "score": scores.repeat(n).numpy(),
    }).cast(dict(schema), strict=False)


def _recommend_history(model_dir: Path, history: list[str], out_file: Path | None, k: int, include_seen: bool,
                       overwrite: bool) -> None:
    """`recommend --history`: next items from an ordered list of raw item ids."""
    from recotorch.artifacts import load

    if out_file is not None:
        targets.output_file(out_file, overwrite=overwrite, models=[model_dir])
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
    frame = model.recommend_history(ids, k=k, exclude_seen=not include_seen).to_frame().drop("user")
    if out_file is not None:
        targets.write_csv(frame, out_file)
        out.print(f"wrote {len(frame):,} next items for a history of {len(ids)} -> {out_file}", highlight=False)
        return
    for row in frame.iter_rows(named=True):
        out.print(f"{row['rank']}\t{row['item']}\t{row['score']:.4f}", highlight=False)
