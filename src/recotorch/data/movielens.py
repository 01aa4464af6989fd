"""The MovieLens releases, read in the publisher's own layouts.

| layout    | releases                                         | files                              |
|-----------|--------------------------------------------------|------------------------------------|
| `ml-100k` | ml-100k                                          | u.data, u.item, u.user, u.genre    |
| `ml-1m`   | ml-1m                                            | ratings.dat, movies.dat, users.dat |
| `ml-10m`  | ml-10m (folder ml-10M100K)                       | ratings.dat, movies.dat            |
| `csv`     | ml-20m, ml-25m, ml-32m, ml-latest(-small)        | ratings.csv, movies.csv            |

Item features: `id, title` (year suffix removed), `year` (null when unknown), `genres`
(list of names; an empty list where the publisher says "unknown" / "(no genres listed)").
User features (ml-100k, ml-1m): `id, age, gender, occupation, zip`. ml-1m's age stays the
publisher's age-group code (1, 18, 25, 35, 45, 50, 56); its occupation codes become names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import polars as pl

from recotorch.data.errors import DataError, MissingFileError
from recotorch.data.interactions import Interactions
from recotorch.data.readers import read_interactions
from recotorch.errors import OptionError

# Release name -> layout family.
LAYOUTS: dict[str, str] = {
    "ml-100k": "ml-100k", "ml-1m": "ml-1m", "ml-10m": "ml-10m", "csv": "csv",
    "ml-20m": "csv", "ml-25m": "csv", "ml-32m": "csv", "ml-latest": "csv", "ml-latest-small": "csv",
}

# From the ml-1m README ("Occupation is chosen from the following choices"); 0 is
# '"other" or not specified'.
ML1M_OCCUPATIONS: tuple[str, ...] = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)

# u.genre of ml-100k, used only when that file is missing.
ML100K_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)
NO_GENRE = ("unknown", "(no genres listed)")

_YEAR = r"\s*\((\d{4})(?:\s*[-–]\s*\d{0,4})?\)\s*$"  # "(1995)" or "(2006–2007)" at the end
_MARKERS = ("u.data", "ratings.dat", "ratings.csv")


def detect_layout(root: str | Path) -> str:
    """Layout family of a MovieLens directory, from the files it holds."""
    root = Path(root)
    names = {p.name for p in root.iterdir()} if root.is_dir() else set()
    if {"u.data", "u.item"} <= names:
        return "ml-100k"
    if "ratings.dat" in names:
        return "ml-1m" if "users.dat" in names else "ml-10m"
    if "ratings.csv" in names:
        return "csv"
    raise DataError(root, "not a MovieLens directory: expected u.data + u.item (ml-100k), "
                    "ratings.dat (ml-1m, ml-10m) or ratings.csv (ml-20m and later); found "
                    f"{', '.join(sorted(names)) or 'nothing'}")


def find_root(root: str | Path) -> Path:
    """`root`, or its only sub-directory when the files sit one level down (as unzipped)."""
    root = Path(root)
    if not root.is_dir():
        raise (DataError(root, "is a file, not a MovieLens directory") if root.exists()
               else MissingFileError(root, "no such directory"))
    if any((root / m).is_file() for m in _MARKERS):
        return root
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))]
    if len(subdirs) == 1 and any((subdirs[0] / m).is_file() for m in _MARKERS):
        return subdirs[0]
    return root


def load_movielens(root: str | Path, layout: str | None = None) -> Interactions:
    """Ratings (with timestamps) and side features of a MovieLens release directory.

    `layout` is a release name ("ml-1m", "ml-25m", ...) or family, checked against the files;
    detected from them when None.

    >>> data = load_movielens("data/ml-1m")  # doctest: +SKIP
    """
    root = find_root(root)
    if layout is not None and layout not in LAYOUTS:
        raise OptionError("layout", f"unknown MovieLens layout {layout!r}; one of {sorted(LAYOUTS)}")
    family = detect_layout(root)
    if layout is not None and LAYOUTS[layout] != family:
        raise DataError(root, f"holds the {family} layout, not that of {layout}")
    loader: Callable[[Path], Interactions] = _LOADERS[family]
    data = loader(root)
    meta = {**data.meta, "origin": f"MovieLens directory {root}", "layout": family}
    return replace(data, source=str(root), meta=meta)


# ---- per layout ----------------------------------------------------------------------------
def _load_100k(root: Path) -> Interactions:
    data = read_interactions(root / "u.data", sep="\t", has_header=False, rating_range=(1, 5))
    items = _items_100k(root)
    users = _parse(root / "u.user", lambda: pl.read_csv(
        root / "u.user", separator="|", has_header=False, quote_char=None, glob=False,
        schema={"id": pl.Int64, "age": pl.Int64, "gender": pl.String,
                "occupation": pl.String, "zip": pl.String}))
    return data.with_features(user_features=users, item_features=items)


def _items_100k(root: Path) -> pl.DataFrame:
    path = root / "u.item"
    genres = ML100K_GENRES
    if (root / "u.genre").is_file():
        try:
            lines = (root / "u.genre").read_text(encoding="latin-1").splitlines()
        except OSError as exc:
            raise DataError(root / "u.genre", f"cannot be read: {exc.strerror or exc}") from None
        genres = tuple(line.split("|")[0] for line in lines if line.strip())

    def parse() -> pl.DataFrame:
        text = path.read_bytes().decode("latin-1").encode("utf-8")  # u.item is Latin-1
        raw = pl.read_csv(text, separator="|", has_header=False, quote_char=None,
                          infer_schema=False)
        if raw.width != 5 + len(genres):
            raise DataError(path, f"{raw.width} fields per line, expected {5 + len(genres)} "
                            f"(id|title|release date|video release date|url|{len(genres)} genres)")
        c = raw.columns
        flags = [pl.when(pl.col(c[5 + k]) == "1").then(pl.lit(name))
                 for k, name in enumerate(genres) if name not in NO_GENRE]
        released = pl.col(c[2]).str.extract(r"(\d{4})\s*$", 1).cast(pl.Int64)
        return raw.select(
            pl.col(c[0]).cast(pl.Int64).alias("id"),
            *_title_year(pl.col(c[1]), fallback_year=released),
            pl.concat_list(flags).list.drop_nulls().alias("genres"),
        )
    return _parse(path, parse)


def _load_dat(root: Path, *, users: bool) -> Interactions:
    data = read_interactions(root / "ratings.dat", sep="::", has_header=False,
                             rating_range=(1, 5) if users else (0.5, 5))
    encoding = "latin-1" if users else None  # ml-1m is Latin-1; ml-10m: UTF-8, else Latin-1
    items = _parse(root / "movies.dat", lambda: _read_dat(
        root / "movies.dat", ["id", "title", "genres"], encoding).select(
        pl.col("id").cast(pl.Int64), *_title_year(pl.col("title")), _genre_list("genres")))
    if not users:
        return data.with_features(item_features=items)
    codes = {str(k): name for k, name in enumerate(ML1M_OCCUPATIONS)}
    people = _parse(root / "users.dat", lambda: _read_dat(
        root / "users.dat", ["id", "gender", "age", "occupation", "zip"]).select(
        pl.col("id").cast(pl.Int64), pl.col("age").cast(pl.Int64), "gender",
        pl.col("occupation").replace_strict(codes, return_dtype=pl.String), "zip"))
    return data.with_features(user_features=people, item_features=items)


def _load_csv(root: Path) -> Interactions:
    data = read_interactions(root / "ratings.csv", user="userId", item="movieId",
                             rating_range=(0.5, 5))
    path = root / "movies.csv"
    items = _parse(path, lambda: pl.read_csv(
        path, schema_overrides={"movieId": pl.Int64}, infer_schema=False, glob=False).select(
        pl.col("movieId").alias("id"), *_title_year(pl.col("title")), _genre_list("genres")))
    return data.with_features(item_features=items)


_LOADERS: dict[str, Callable[[Path], Interactions]] = {
    "ml-100k": _load_100k,
    "ml-1m": lambda root: _load_dat(root, users=True),
    "ml-10m": lambda root: _load_dat(root, users=False),
    "csv": _load_csv,
}


# ---- helpers -------------------------------------------------------------------------------
def _read_dat(path: Path, names: list[str], encoding: str | None = None) -> pl.DataFrame:
    """A small `::`-separated file as text columns (UTF-8, else Latin-1 unless told)."""
    raw = path.read_bytes()
    if encoding is None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    else:
        text = raw.decode(encoding)
    lines = pl.Series("line", [ln.rstrip("\r") for ln in text.split("\n") if ln.strip()])
    too_many = lines.str.count_matches("::", literal=True) > len(names) - 1
    if too_many.any():
        at = int(too_many.arg_max())
        raise DataError(path, f"more than {len(names)} '::'-separated fields",
                        line=_line_of(text, at))
    parts = lines.str.split_exact("::", len(names) - 1).struct.unnest()
    parts.columns = names
    return parts


def _line_of(text: str, nonblank_index: int) -> int:
    seen = -1
    for number, line in enumerate(text.split("\n"), start=1):
        seen += bool(line.strip())
        if seen == nonblank_index:
            return number
    return 0  # pragma: no cover


def _title_year(title: pl.Expr, fallback_year: pl.Expr | None = None) -> list[pl.Expr]:
    title = title.str.strip_chars()
    year = title.str.extract(_YEAR, 1).cast(pl.Int64)
    if fallback_year is not None:
        year = pl.coalesce(year, fallback_year)
    return [title.str.replace(_YEAR, "").alias("title"), year.alias("year")]


def _genre_list(column: str) -> pl.Expr:
    return (pl.col(column).str.split("|")
            .list.eval(pl.element().filter(~pl.element().is_in(list(NO_GENRE))))
            .alias("genres"))


def _parse(path: Path, build: Callable[[], pl.DataFrame]) -> pl.DataFrame:
    """Run a Polars parse, turning its errors into a `DataError` that names the file."""
    if not path.is_file():
        raise DataError(path, "missing from the MovieLens directory")
    try:
        return build()
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot be parsed: {(str(exc).splitlines() or ['?'])[0]}") from None
    except OSError as exc:
        raise DataError(path, f"cannot be read: {exc.strerror or exc}") from None
