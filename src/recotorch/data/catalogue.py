"""Item catalogues: names and categories from a file, kept with a model as its item features.

A catalogue file (CSV, TSV, Parquet, ...; anything `data.readers` reads) has one row per item:
an id column, optionally a name column, and any category or tag columns ("Dairy", or several
values separated by "|": "Comedy|Drama"). MovieLens's own `u.item` is read in its native layout.

Stored form (the model's `item_features_`, saved as item_features.parquet by `artifacts`):
`id` (the model's item ids, in index order), `title` (the name as given; None where the
catalogue has no entry) and one List(Utf8) column per category column. `natural_title` gives
a name in reading order for display ("Godfather, The" -> "The Godfather").
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from recotorch.data.interactions import align_features
from recotorch.data.vocab import Vocab
from recotorch.errors import InputFileError, OptionError

NAME = "title"  # the column of item features that holds an item's name (MovieLens's convention)
NAME_COLUMNS = ("title", "name")  # where a stored name is looked for, first found
LIST_SEP = "|"
DEFAULT_NAME_COLUMNS = ("name", "title")  # a catalogue file's name column when none is given
MOVIELENS_ITEMS = "u.item"


@dataclass(frozen=True)
class Catalogue:
    """A catalogue as read: `frame` holds `id`, `title` (if named) and List(Utf8) category columns."""

    frame: pl.DataFrame
    source: Path
    id_column: str
    name_column: str | None
    categories: tuple[str, ...]
    unused: tuple[str, ...] = ()  # columns of the file that are neither id, name nor category

    def describe(self) -> str:
        """One line: what was read from which columns."""
        name = f"names from {self.name_column!r}" if self.name_column else "no names"
        cats = f"categories from {', '.join(map(repr, self.categories))}" if self.categories else "no categories"
        return f"catalogue {self.source}: {self.frame.height:,} items (ids from {self.id_column!r}), {name}, {cats}"


@dataclass(frozen=True)
class Attached:
    """Item features with a catalogue merged in, and how the catalogue matched the model's items."""

    features: pl.DataFrame
    matched: int  # model items the catalogue has a row for
    missing: int  # model items it has no row for (shown by id)
    extra: int  # catalogue rows whose id the model does not know (not stored)
    extra_examples: list
    replaced: tuple[str, ...]  # columns of earlier item features the catalogue replaced

    def notes(self, catalogue: Catalogue) -> list[str]:
        """Plain sentences for the user: counts and anything not stored."""
        lines = [f"{catalogue.describe()}; {self.matched:,} of {self.matched + self.missing:,} model items "
                 "found in it" + (f" ({self.missing:,} without an entry are shown by id)" if self.missing else "")]
        if self.extra:
            lines.append(f"note: {self.extra:,} catalogue row(s) name items the model does not know (not stored), "
                         f"e.g. {self.extra_examples}")
        if catalogue.unused:
            lines.append(f"note: column(s) {', '.join(map(repr, catalogue.unused))} of {catalogue.source} are "
                         "numbers, not names or categories: not stored (name them with --items-category-col "
                         "to use them as categories)")
        if self.replaced:
            lines.append(f"note: the catalogue replaces the model's earlier item column(s) {', '.join(self.replaced)}")
        return lines


def read_catalogue(path: str | Path, *, id_col: str | None = None, name_col: str | None = None,
                   category_cols: list[str] | None = None, item_col: str = "item") -> Catalogue:
    """Read a catalogue file; `InputFileError` / `OptionError` name the file, line or flag at fault.

    Defaults: ids from `id`, else from `item_col` (the interactions' item column); names from
    `name`, else `title` (none when neither exists); categories from every other column that
    is not all numbers (numeric columns are reported as unused unless named in `category_cols`).
    """
    path = Path(path)
    if path.name == MOVIELENS_ITEMS and path.is_file():
        for flag, value in (("--items-id-col", id_col), ("--items-name-col", name_col),
                            ("--items-category-col", category_cols)):
            if value:
                raise OptionError(flag, f"is not used with MovieLens's {MOVIELENS_ITEMS} (its layout is fixed)")
        return _movielens(path)
    from recotorch.data.readers import file_columns

    names = file_columns(path)
    ident = id_col or next((c for c in ("id", item_col) if c in names), None)
    if ident is None:
        raise OptionError("--items-id-col", f"{path} has no column 'id' or {item_col!r}; name its item id column "
                                            f"(columns: {names})")
    _require(path, names, ident, "--items-id-col")
    name = name_col or next((c for c in DEFAULT_NAME_COLUMNS if c in names and c != ident), None)
    if name_col:
        _require(path, names, name_col, "--items-name-col")
    for col in category_cols or []:
        _require(path, names, col, "--items-category-col")
    chosen = [c for c in (ident, name) if c]
    if category_cols:
        taken = set(chosen)
        dup = [c for c in category_cols if c in taken or category_cols.count(c) > 1]
        if dup:
            raise OptionError("--items-category-col", f"column {dup[0]!r} is given twice (or is the id/name column)")
        cats = list(category_cols)
    else:
        cats = [c for c in names if c not in chosen]
    raw = _read(path, [*chosen, *cats])
    ids = raw[ident]
    if ids.is_duplicated().any():
        dup = ids.filter(ids.is_duplicated())[0]
        rows = (ids == dup).arg_true().head(2).to_list()
        raise InputFileError(f"{path}: item id {dup!r} appears more than once (data rows {rows[0] + 1} and "
                             f"{rows[1] + 1}); a catalogue lists each item once")
    unused: list[str] = []
    if not category_cols:
        unused = [c for c in cats if _numeric(raw[c])]
        cats = [c for c in cats if c not in unused]
    columns = [ids.alias("id")]
    if name:
        columns.append(_text(raw[name]).alias(NAME))
    columns += [_lists(raw[c]).alias(c) for c in cats]
    frame = pl.DataFrame(columns)
    return Catalogue(frame, path, ident, name, tuple(cats), tuple(unused))


def attach(features: pl.DataFrame | None, catalogue: Catalogue, vocab: Vocab) -> Attached:
    """`features` (the model's item features, or None) with the catalogue's columns, one row per id of `vocab`.

    Columns the catalogue provides replace earlier ones of the same name; a catalogue with
    names also replaces an earlier `year` (it belonged to the earlier titles).
    """
    cat = catalogue.frame
    idx = vocab.index(cat["id"])
    found = pl.Series(idx >= 0)
    present = cat.filter(found).with_columns(vocab.ids.gather(idx[idx >= 0]).alias("id"))
    extra_rows = cat.filter(~found)
    aligned = align_features(present, vocab)
    matched = present.height
    replaced: tuple[str, ...] = ()
    if features is not None:
        drop = [c for c in features.columns
                if c != "id" and (c in cat.columns or (c == "year" and NAME in cat.columns))]
        replaced = tuple(drop)
        old = align_features(features.drop(drop), vocab)
        aligned = old.join(aligned, on="id", how="left", maintain_order="left")
    return Attached(aligned, matched, len(vocab) - matched, extra_rows.height,
                    extra_rows["id"].head(5).to_list(), replaced)


def natural_title(title: str) -> str:
    """A title in reading order: "Godfather, The (1972)" -> "The Godfather (1972)".

    The main title and each trailing parenthesised part (an alternative title, a year) are
    fixed on their own: "Blue Angel, The (Blaue Engel, Der)" -> "The Blue Angel (Der Blaue Engel)".
    A title without such an article is returned unchanged.
    """
    if "," not in title:
        return title
    match = _GROUPS.match(title)
    head, parts = (match["head"], re.findall(r"\(([^()]*)\)", match["tail"])) if match else (title, [])
    fixed = [_front(head), *(_front(p) for p in parts)]
    if not any(fixed) or not head.strip():
        return title
    head = fixed[0] or head.strip()
    return " ".join([head, *(f"({f or p})" for f, p in zip(fixed[1:], parts, strict=True))])


def item_names(features: pl.DataFrame | None) -> pl.Series | None:
    """Display names per row of `features` (reading order, MovieLens's year appended), or None without names."""
    if features is None:
        return None
    column = next((c for c in NAME_COLUMNS if c in features.columns), None)
    if column is None:
        return None
    titles = features[column].cast(pl.Utf8)
    names = titles.map_elements(natural_title, return_dtype=pl.Utf8, skip_nulls=True)
    if "year" in features.columns and features["year"].dtype.is_integer():
        year = features["year"].cast(pl.Utf8)
        names = pl.select(pl.when(year.is_not_null() & names.is_not_null())
                          .then(names + " (" + year + ")").otherwise(names)).to_series()
    return names.alias("name")


# ---- helpers -------------------------------------------------------------------------------
# Articles that MovieLens-style catalogues move to the end ("Godfather, The"); matched case-sensitively.
ARTICLES = ("The", "A", "An", "Le", "La", "Les", "L'", "Un", "Une", "Il", "Lo", "Gli", "Der", "Die", "Das",
            "Ein", "Eine", "El", "Los", "Las", "De", "Het", "Den", "Det")
_TRAILING = re.compile(r"^(?P<body>.*[^\s,]),\s+(?P<article>" + "|".join(re.escape(a) for a in ARTICLES) + r")$")
_GROUPS = re.compile(r"^(?P<head>.*?)(?P<tail>(?:\s*\([^()]*\))*)\s*$")


def _front(part: str) -> str | None:
    """`part` with a trailing article moved to the front, or None when it has none."""
    match = _TRAILING.match(part.strip())
    if match is None:
        return None
    article = match["article"]
    return f"{article}{match['body']}" if article.endswith("'") else f"{article} {match['body']}"


def _require(path: Path, names: list[str], column: str, flag: str) -> None:
    if column in names:
        return
    close = difflib.get_close_matches(column, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise OptionError(flag, f"{path} has no column {column!r}{hint}; its columns are {names}")


def _read(path: Path, columns: list[str]) -> pl.DataFrame:
    """The named columns, the first checked as ids (like the interactions' item ids), the others as read."""
    from recotorch.data.readers import read_columns

    return read_columns(path, columns, as_read=columns[1:])


def _text(s: pl.Series) -> pl.Series:
    """Names as stripped text; blanks become missing."""
    text = s.cast(pl.Utf8).str.strip_chars()
    return pl.select(pl.when(text.str.len_chars() > 0).then(text)).to_series()


def _lists(s: pl.Series) -> pl.Series:
    """A category column as List(Utf8): text split on "|", stripped, blanks dropped."""
    lists = s.cast(pl.List(pl.Utf8)) if isinstance(s.dtype, pl.List) else s.cast(pl.Utf8).str.split(LIST_SEP)
    cleaned = lists.list.eval(pl.element().str.strip_chars().filter(pl.element().str.len_chars() > 0))
    return pl.select(pl.lit(cleaned).fill_null(pl.lit([], dtype=pl.List(pl.Utf8)))).to_series().alias(s.name)


def _numeric(s: pl.Series) -> bool:
    if s.dtype.is_numeric():
        return True
    if s.dtype != pl.Utf8:
        return False
    values = s.drop_nulls().str.strip_chars()
    values = values.filter(values.str.len_chars() > 0)
    return values.len() > 0 and values.cast(pl.Float64, strict=False).null_count() == 0


def _movielens(path: Path) -> Catalogue:
    from recotorch.data.movielens import _items_100k

    frame = _items_100k(path.parent)
    return Catalogue(frame, path, "movie id", "movie title", ("genres",))
