"""`recotorch explain`: what a trained model learned, as tables on screen and files to look at."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.table import Table

from recotorch.cli.common import Overwrite, out
from recotorch.cli.targets import output_file, write_csv, write_text
from recotorch.data.catalogue import item_names, natural_title
from recotorch.errors import OutputPathError, UnknownIdError, UnsupportedError
from recotorch.models.base import Estimator


def explain(
    model_dir: Annotated[Path, typer.Argument(help="Model directory (e.g. runs/quickstart/model-mf).")],
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Folder to write the files in "
                                                 "(default: MODEL_DIR/explain).")] = None,
    item: Annotated[list[str] | None, typer.Option(help="Item id(s) whose nearest items to show.")] = None,
    top: Annotated[int, typer.Option(help="Rows per table.", min=1)] = 10,
    clusters: Annotated[int, typer.Option(help="Number of user clusters (0 to skip).", min=0)] = 6,
    map_items: Annotated[int, typer.Option(help="Most-rated items used for the PCA map.", min=2)] = 1000,
    overwrite: Overwrite = False,
) -> None:
    """Biases (lowest/highest), a PCA map of item embeddings, nearest items and user clusters.

    Existing files of the same names in the output folder are refused unless --overwrite is given.
    """
    from recotorch.artifacts import load
    from recotorch.explain import item_bias_table, nearest_items, pca_map, plot_pca_map, user_clusters

    target = out_dir or model_dir / "explain"
    if target.exists() and not target.is_dir():
        raise OutputPathError(target, "--out exists and is not a folder; give a folder for the explain files")
    model = load(model_dir)
    has_biases, vectors = model.supports("item_biases"), model.item_vectors() is not None
    has_clusters = bool(clusters) and model.supports("user_vectors")
    if item and not vectors:
        raise UnsupportedError(f"--item: model {model.name!r} has no item vectors to find nearest items with")
    for raw in item or []:
        if int(model.items_.index([_as_id(model, raw)])[0]) < 0:
            raise UnknownIdError(f"--item: item {raw!r} is not in the model {model_dir}")
    names = ["explain.json"]
    names += ["bias_lowest.csv", "bias_highest.csv"] if has_biases else []
    names += ["pca_map.png", "pca_coords.csv", "pca_loadings.csv", "pca_genres.csv"] if vectors else []
    names += ["user_clusters.csv"] if has_clusters else []
    # the default folder lives in the model directory on purpose; anywhere else inside it is refused
    inside_ok = target.resolve() == (model_dir / "explain").resolve()
    for name in names:
        output_file(target / name, overwrite=overwrite, models=[] if inside_ok else [model_dir])

    written: list[Path] = []
    summary: dict = {"model": model.name}
    named = _namer(model)
    if has_biases:
        tables = {side: named(frame) for side, frame in item_bias_table(model, n=top, min_count=5).items()}
        for side, frame in tables.items():
            out.print(_table(f"Items with the {side} learned bias (>= 5 ratings)", frame))
            written.append(_write(frame, target / f"bias_{side}.csv"))
        summary["bias"] = {side: frame.to_dicts() for side, frame in tables.items()}
    if vectors:
        result = pca_map(model, top_items=map_items)
        result = replace(result, coords=named(result.coords), loadings=named(result.loadings))
        written.append(plot_pca_map(result, target / "pca_map.png", title=f"{model.name} item embeddings"))
        written.append(_write(result.coords, target / "pca_coords.csv"))
        written.append(_write(result.loadings, target / "pca_loadings.csv"))
        out.print(_table("What the first components separate (items at each end)",
                         result.loadings.filter(pl.col("component") <= 2)))
        if result.genres is not None:
            written.append(_write(result.genres, target / "pca_genres.csv"))
            out.print(_table("Mean component score by genre", result.genres))
        summary["pca"] = {"explained_variance": result.explained, "loadings": result.loadings.to_dicts()}
        for raw in item or []:
            frame = named(nearest_items(model, _as_id(model, raw), k=top))
            out.print(_table(f"Nearest items to {raw}", frame))
            summary.setdefault("nearest", {})[raw] = frame.to_dicts()
    if has_clusters:
        profile = user_clusters(model, k=clusters)
        out.print(_table("User clusters", profile.profiles))
        written.append(_write(profile.assignments, target / "user_clusters.csv"))
        summary["clusters"] = profile.profiles.to_dicts()
    written.append(write_text(json.dumps(summary, indent=1, default=str), target / "explain.json"))
    out.print("wrote " + ", ".join(str(p) for p in written), highlight=False)


def _namer(model: Estimator) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """Replaces a table's `title` by the catalogue's name in reading order ("The Godfather (1972)")."""
    names = item_names(model.item_features_)

    def named(frame: pl.DataFrame) -> pl.DataFrame:
        if names is None or "title" not in frame.columns:
            return frame
        if "item" not in frame.columns:  # titles only (PCA loadings): reading order, as stored otherwise
            return frame.with_columns(pl.col("title").map_elements(natural_title, return_dtype=pl.Utf8,
                                                                   skip_nulls=True))
        shown = names.gather(model.items_.index(frame["item"]))
        return frame.with_columns(shown.fill_null(frame["title"]).alias("title"))

    return named


def _as_id(model: Estimator, raw: str) -> int | str:
    if not model.items_.is_integer:
        return raw
    if not raw.lstrip("-").isdigit():
        raise UnknownIdError(f"--item: item {raw!r} is not in the model (its item ids are integers)")
    return int(raw)


def _write(frame: pl.DataFrame, path: Path) -> Path:
    flat = frame.with_columns(pl.col(c).cast(pl.List(pl.Utf8)).list.join(", ")
                              for c, t in frame.schema.items() if isinstance(t, pl.List))
    return write_csv(flat, path)


def _table(title: str, frame: pl.DataFrame) -> Table:
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(col)
    for row in frame.iter_rows():
        table.add_row(*(_cell(v) for v in row))
    return table


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)
