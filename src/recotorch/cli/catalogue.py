"""`recotorch items MODEL_DIR [FILE]` and the `--items` options of `fit`: item catalogues kept with a model.

A catalogue (an id column, a name column, any category or tag columns) is stored with the model
as its item features (item_features.parquet of the model directory's current version, listed
with its SHA-256 in model.json), so `recommend`, `similar`, `explain` and `serve` show names
and categories.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recotorch.cli.common import model_schema, out, warn
from recotorch.data.catalogue import Catalogue, attach, item_names, read_catalogue
from recotorch.data.vocab import Vocab
from recotorch.errors import OptionError

ItemsFile = Annotated[Path | None, typer.Option(
    "--items", help="Item catalogue stored with the model (CSV, TSV, Parquet, or MovieLens u.item): an id "
                    "column, a name column, any category/tag columns (several values as 'a|b').")]
ItemsIdCol = Annotated[str | None, typer.Option(
    "--items-id-col", help="Catalogue column of item ids (default: 'id', else the interactions' item column "
                           "name: --item-col, or the model's).")]
ItemsNameCol = Annotated[str | None, typer.Option(
    "--items-name-col", help="Catalogue column of item names (default: 'name', else 'title'; none if neither).")]
ItemsCategoryCol = Annotated[list[str] | None, typer.Option(
    "--items-category-col", help="Catalogue column of categories or tags (repeatable; default: every other "
                                 "column that is not all numbers).")]


def read_items(path: Path | None, id_col: str | None, name_col: str | None, category_cols: list[str] | None,
               *, item_col: str = "item") -> Catalogue | None:
    """The catalogue named by the --items options (None without --items; the column flags need it)."""
    if path is None:
        for flag, value in (("--items-id-col", id_col), ("--items-name-col", name_col),
                            ("--items-category-col", category_cols)):
            if value:
                raise OptionError(flag, "goes with --items FILE (the catalogue it names a column of)")
        return None
    return read_catalogue(path, id_col=id_col, name_col=name_col, category_cols=category_cols, item_col=item_col)


def attached_features(catalogue: Catalogue, features, vocab: Vocab):
    """Item features with `catalogue` merged in; prints how it matched (on stderr)."""
    result = attach(features, catalogue, vocab)
    for line in result.notes(catalogue):
        warn(line)
    return result.features


def items(
    model_dir: Annotated[Path, typer.Argument(help="Model directory.")],
    file: Annotated[Path | None, typer.Argument(
        help="Catalogue to attach (CSV, TSV, Parquet, or MovieLens u.item); without it, show the stored one.")]
        = None,
    id_col: ItemsIdCol = None,
    name_col: ItemsNameCol = None,
    category_col: ItemsCategoryCol = None,
    top: Annotated[int, typer.Option(help="Rows shown.", min=0)] = 5,
) -> None:
    """Attach an item catalogue (names, categories) to a model, or show the one it has.

    Attaching writes a new version of the model directory (the old one is replaced crash-safely;
    weights unchanged). Columns the catalogue provides replace earlier ones of the same name;
    catalogue rows for items the model does not know are counted and not stored.
    """
    from recotorch.artifacts import load, save

    if file is None:
        for flag, value in (("--items-id-col", id_col), ("--items-name-col", name_col),
                            ("--items-category-col", category_col)):
            if value:
                raise OptionError(flag, "goes with a catalogue FILE to attach")
        return _show(load(model_dir), model_dir, top)
    model = load(model_dir)
    schema = model_schema(model, model_dir)
    item_col = schema.columns().get("item") if schema is not None else None
    catalogue = read_catalogue(file, id_col=id_col, name_col=name_col, category_cols=category_col,
                               item_col=item_col if isinstance(item_col, str) else "item")
    model.item_features_ = attached_features(catalogue, model.item_features_, model.items_)
    save(model, model_dir)
    out.print(f"attached {file} to {model_dir}", highlight=False, soft_wrap=True)


def _show(model, model_dir: Path, top: int) -> None:
    from rich.table import Table

    features = model.item_features_
    if features is None:
        out.print(f"{model_dir} has no item catalogue (attach one with `recotorch items {model_dir} FILE`)",
                  highlight=False, soft_wrap=True)
        return
    names = item_names(features)
    named = 0 if names is None else len(names) - names.null_count()
    out.print(f"{model_dir}: {model.n_items:,} items, {named:,} with a name; columns "
              f"{', '.join(c for c in features.columns if c != 'id')}", highlight=False, soft_wrap=True)
    shown = features.head(top)
    if names is not None:
        shown = shown.with_columns(names.head(top).alias("name"))
    table = Table()
    for col in shown.columns:
        table.add_column(col)
    for row in shown.iter_rows():
        table.add_row(*("" if v is None else ", ".join(map(str, v)) if isinstance(v, list) else str(v) for v in row))
    out.print(table)
