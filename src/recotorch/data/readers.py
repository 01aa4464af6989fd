"""Read interaction logs (CSV, TSV, other delimited text, Parquet) into `Interactions`.

Everything is validated with whole-column Polars expressions; only when something is wrong
do we go back for the first offending row, and report it as a `DataError` naming the file,
line (1-based, counting the header) and column.

Duplicate (user, item) rows: **the latest by timestamp is kept (the last in file order when
there is no timestamp, or on a tie)**. The number dropped is logged at WARNING on the
"recotorch" logger and kept in `Interactions.meta["duplicates_dropped"]`. Blank lines are
skipped, logged and counted in `meta["blank_lines_skipped"]`. Nothing else is dropped.
"""

from __future__ import annotations

import codecs
import csv
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from recotorch.data.errors import DataError, first_long_record, first_undecodable, record_line
from recotorch.data.interactions import Interactions

log = logging.getLogger("recotorch")

_SEP_BY_SUFFIX = {".csv": ",", ".tsv": "\t"}
_PARQUET = {".parquet", ".pq"}
_SNIFF_ORDER = ("\t", "::", ",", ";", "|", " ")
_INT_ID = r"^-?(?:0|[1-9][0-9]{0,17})$"  # ints without leading zeros ("007" stays a string)
_ROLE_NAMES = {"user": "user id", "item": "item id", "rating": "rating", "timestamp": "timestamp"}
_TIME_HINT = "expected integer seconds since 1970 or an ISO date/time like 2024-01-31T12:00:00"


@dataclass
class _Table:
    """Raw columns renamed to roles, plus what is needed to point at a line."""

    path: Path
    frame: pl.DataFrame
    names: dict[str, str]  # role -> column name as the user knows it
    locate: Callable[[int], tuple[int | None, int | None]]  # record index -> (line, row)
    text: bool
    has_header: bool


def read_interactions(
    path: str | Path,
    *,
    user: str | int = "user",
    item: str | int = "item",
    rating: str | int | None = "rating",
    timestamp: str | int | None = "timestamp",
    sep: str | None = None,
    has_header: bool = True,
    rating_range: tuple[float, float] | None = None,
    encoding: str = "utf8",
) -> Interactions:
    """Read a CSV/TSV/delimited-text or Parquet file of interactions.

    Columns are named by header name or 0-based position. Without a header, named columns
    are taken in the order user, item, rating, timestamp (skipping those set to None).
    `rating`/`timestamp` = None reads implicit data. `sep` comes from the extension (.csv, .tsv)
    or is sniffed; it may be several characters ("::"). Ids that all look like integers
    (no leading zeros; judged on the first 1,000 rows, then on the whole column when a later
    value is not one) are kept as Int64, any others as strings. Timestamps may be integer
    epoch seconds or ISO date/times (converted to epoch seconds, UTC when no offset is given).
    Non-UTF-8 files (`encoding="latin1"`, ...) are transcoded in memory.

    >>> data = read_interactions("ratings.csv", user="userId", item="movieId")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    roles = {"user": user, "item": item, "rating": rating, "timestamp": timestamp}
    wanted = {role: col for role, col in roles.items() if col is not None}
    if path.suffix.lower() in _PARQUET:
        table = _read_parquet(path, wanted)
    else:
        table = _read_text(path, wanted, sep=sep, has_header=has_header, encoding=encoding)
    frame, blank = _validate(table, rating_range)
    frame, dropped = drop_duplicates(frame)
    if dropped:
        log.warning("%s: dropped %d duplicate (user, item) rows, keeping the latest by "
                    "timestamp (last in file order on ties)", path.name, dropped)
    inter = Interactions.from_frame(
        frame, rating="rating" if "rating" in frame.columns else None,
        timestamp="timestamp" if "timestamp" in frame.columns else None, source=str(path))
    meta = {"origin": f"file {path}", "path": str(path), "duplicates_dropped": dropped,
            "blank_lines_skipped": blank}
    return replace(inter, meta=meta)


def write_interactions(interactions: Interactions, path: str | Path) -> Path:
    """Write raw ids (and rating/timestamp) as Parquet (.parquet/.pq) or delimited text.

    The file is written to a temporary name and moved into place, so readers never see half.
    """
    path = Path(path)
    frame = interactions.to_frame()
    suffix = path.suffix.lower()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        if suffix in _PARQUET:
            frame.write_parquet(tmp)
        else:
            frame.write_csv(tmp, separator=_SEP_BY_SUFFIX.get(suffix, ","))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def drop_duplicates(frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Keep one row per (user, item): the latest by timestamp, the last in order on ties.

    One sort of a 64-bit pair key finds the repeated pairs; only their rows are ranked.
    """
    key = frame.select(_pair_key(frame).alias("k"))["k"]
    ordered = key.sort()
    repeated = ordered.filter(ordered == ordered.shift(1))
    if repeated.is_empty():
        return frame, 0
    order = ["timestamp", "_ord"] if "timestamp" in frame.columns else ["_ord"]
    suspects = frame.with_row_index("_ord").filter(key.is_in(repeated.implode()))
    kept = suspects.sort(order).unique(subset=["user", "item"], keep="last")["_ord"]
    dropped = suspects["_ord"].filter(~suspects["_ord"].is_in(kept.implode()))
    if dropped.is_empty():  # only hash collisions
        return frame, 0
    keep = np.ones(frame.height, dtype=bool)
    keep[dropped.to_numpy()] = False
    return frame.filter(pl.Series(keep)), len(dropped)


def _pair_key(frame: pl.DataFrame) -> pl.Expr:
    """One cheap key per (user, item): exact for integer ids, a hash otherwise."""
    if frame["user"].dtype == pl.Int64 and frame["item"].dtype == pl.Int64:
        lo_u, hi_u, lo_i, hi_i = frame.select(
            pl.col("user").min().alias("a"), pl.col("user").max().alias("b"),
            pl.col("item").min().alias("c"), pl.col("item").max().alias("d")).row(0)
        span_u, span_i = hi_u - lo_u + 1, hi_i - lo_i + 1
        if span_u * span_i < 2**62:
            return (pl.col("user") - lo_u) * span_i + (pl.col("item") - lo_i)
    return pl.struct("user", "item").hash()  # a collision only sends us down the exact path


# ---- text ----------------------------------------------------------------------------------
def _read_text(path: Path, wanted: dict, *, sep: str | None, has_header: bool,
               encoding: str) -> _Table:
    codec = codecs.lookup(encoding).name
    if path.stat().st_size == 0:
        raise DataError(path, "the file is empty")
    with path.open("rb") as f:
        head_bytes = f.read(1 << 16)
    head = head_bytes.decode(codec, errors="replace").lstrip("\ufeff")
    if not head.strip():
        raise DataError(path, "the file holds only blank lines")
    sep = sep or _SEP_BY_SUFFIX.get(path.suffix.lower()) or _sniff(path, head)
    first = next(line for line in head.split("\n") if line.strip()).rstrip("\r")
    fields = next(csv.reader([first], delimiter=sep)) if len(sep) == 1 else first.split(sep)
    header = fields if has_header else None
    positions = _positions(path, wanted, header, len(fields))
    names = {role: header[pos] if header else (wanted[role] if isinstance(wanted[role], str)
                                               else f"column {pos + 1}")
             for role, pos in positions.items()}
    source: str | bytes = str(path)
    locate = lambda rec: (record_line(path, rec + has_header, sep=sep, encoding=codec), None)  # noqa: E731
    try:
        if codec != "utf-8":  # Polars reads UTF-8 only: transcode in memory
            source = path.read_bytes().decode(codec).encode("utf-8")
        if len(sep) == 1:
            frame = _read_delimited(source, sep, header, len(fields), positions)
        else:
            frame = _read_multichar(path, source, sep, has_header, positions, len(fields), locate)
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        raise _diagnose(path, codec, encoding, sep, header, len(fields), names, positions, exc) from None
    return _Table(path, frame, names, locate, text=True, has_header=has_header)


def _read_delimited(source: str | bytes, sep: str, header: list[str] | None, n_fields: int,
                    positions: dict) -> pl.DataFrame:
    """Read typed when the first rows say the values are plain numbers, else as text.

    Typed reading needs about half the memory; a value that does not parse sends us back
    to reading text, where validation finds and names it.
    """
    def read(dtypes: dict, n_rows: int | None = None) -> pl.DataFrame:
        if header is not None:
            frame = pl.read_csv(source, separator=sep, columns=list(positions.values()),
                                schema_overrides={header[positions[r]]: t for r, t in dtypes.items()},
                                infer_schema=False, n_rows=n_rows)
        else:
            schema = {f"_{i}": pl.String for i in range(n_fields)}
            schema.update({f"_{positions[r]}": t for r, t in dtypes.items()})
            frame = (pl.scan_csv(source, separator=sep, has_header=False, schema=schema,
                                 n_rows=n_rows).select(f"_{p}" for p in positions.values()).collect())
        frame.columns = list(positions)
        return frame

    sample = read({}, n_rows=1000)
    dtypes = {role: _sample_dtype(role, sample[role]) for role in positions}
    if any(dtype != pl.String for dtype in dtypes.values()):
        try:
            return read(dtypes)
        except pl.exceptions.ComputeError:
            pass
    return read({})


def _sample_dtype(role: str, s: pl.Series) -> pl.DataType:
    s = s.drop_nulls()
    if role in ("user", "item"):
        return pl.Int64 if s.str.contains(_INT_ID).all() else pl.String
    target = pl.Float64 if role == "rating" else pl.Int64
    return target if s.cast(target, strict=False).null_count() == 0 else pl.String


def _positions(path: Path, wanted: dict, header: list[str] | None, n_fields: int) -> dict:
    """0-based field position of each role."""
    out: dict[str, int] = {}
    for k, (role, col) in enumerate(wanted.items()):
        if isinstance(col, int):
            pos = col
        elif header is None:
            pos = k
        elif col in header:
            pos = header.index(col)
        else:
            hint = f", or {role}=None if there is none" if role in ("rating", "timestamp") else ""
            raise DataError(path, f"no column {col!r} (the columns are {', '.join(map(repr, header))});"
                            f" pass {role}=<column name>{hint}", line=1, column=col)
        if not 0 <= pos < n_fields:
            what = "the header has" if header else "the first line has"
            raise DataError(path, f"{role} is column {pos + 1}, but {what} {n_fields} field(s)",
                            line=1, column=col if isinstance(col, str) else None)
        if pos in out.values():
            raise ValueError(f"two roles read the same column {col!r}")
        out[role] = pos
    return out


def _sniff(path: Path, head: str) -> str:
    lines = [ln.rstrip("\r") for ln in head.split("\n") if ln.strip()]
    if len(head) >= 1 << 16:
        lines = lines[:-1] or lines  # the last line may be cut short
    counts = {cand: [ln.count(cand) for ln in lines[:50]] for cand in _SNIFF_ORDER}
    for cand, seen in counts.items():  # the same number on every line, else on every line at all
        if min(seen) > 0 and len(set(seen)) == 1:
            return cand
    for cand, seen in counts.items():
        if min(seen) > 0:
            return cand
    raise DataError(path, "cannot tell the field separator; pass sep=...", line=1)


def _read_multichar(path: Path, source: str | bytes, sep: str, has_header: bool,
                    positions: dict, n_fields: int, locate: Callable) -> pl.DataFrame:
    """Separators like "::" (MovieLens .dat): read whole lines, split with a string kernel."""
    lines = pl.read_csv(source, separator="\x1f", has_header=False, quote_char=None,
                        infer_schema=False, new_columns=["_line"])["_line"]
    if has_header:
        lines = lines.slice(1)
    extra = (lines.str.count_matches(sep, literal=True) > n_fields - 1).fill_null(False)
    if extra.any():
        rec = extra.arg_max()
        raise DataError(path, f"{lines[rec].count(sep) + 1} fields, but the "
                        f"{'header' if has_header else 'first line'} has {n_fields}",
                        line=locate(rec)[0])
    parts = lines.str.split_exact(sep, n_fields - 1).struct.unnest()
    cols = parts.columns
    return parts.select(pl.when(pl.col(cols[pos]) != "").then(pl.col(cols[pos])).alias(role)
                        for role, pos in positions.items())


def _diagnose(path: Path, codec: str, encoding: str, sep: str, header: list[str] | None,
              n_fields: int, names: dict, positions: dict, exc: Exception) -> DataError:
    """After a failed read: name the first undecodable byte, or overlong record, by line."""
    if found := first_undecodable(path, codec):
        line, byte, prefix = found
        field = prefix.count(sep.encode()) if b'"' not in prefix else -1
        by_pos = {pos: names[role] for role, pos in positions.items()}
        column = by_pos.get(field) or (header[field] if header and 0 <= field < len(header) else None)
        hint = ' (is it Latin-1? pass encoding="latin1")' if codec == "utf-8" else ""
        return DataError(path, f"cannot decode byte 0x{byte:02x} as {encoding!r}{hint}",
                         line=line, column=column)
    if len(sep) == 1 and (long := first_long_record(path, n_fields, sep=sep, encoding=codec)):
        what = "the header has" if header else "the first line has"
        return DataError(path, f"{long[1]} fields, but {what} {n_fields}", line=long[0])
    return DataError(path, f"cannot be read as {sep!r}-separated text: {str(exc).splitlines()[0]}")


# ---- parquet -------------------------------------------------------------------------------
def _read_parquet(path: Path, wanted: dict) -> _Table:
    try:
        schema = list(pl.read_parquet_schema(path))
    except Exception as exc:
        raise DataError(path, f"not a readable Parquet file ({exc})") from None
    positions = _positions(path, wanted, schema, len(schema))
    names = {role: schema[pos] for role, pos in positions.items()}
    frame = pl.read_parquet(path, columns=list(names.values()))
    frame.columns = list(names)
    return _Table(path, frame, names, lambda rec: (None, rec + 1), text=False, has_header=False)


# ---- validation ----------------------------------------------------------------------------
def _validate(t: _Table, rating_range: tuple[float, float] | None) -> tuple[pl.DataFrame, int]:
    """Typed, checked columns user, item[, rating][, timestamp]; the number of blank lines."""
    frame, blank = t.frame, 0
    if t.text and frame.height:
        is_blank = pl.all_horizontal(pl.col(c).is_null() for c in frame.columns)
        blank = frame.select(is_blank.sum()).item()
        if blank:
            frame = frame.with_row_index("_rec").filter(~is_blank)
            log.warning("%s: skipped %d blank line(s)", t.path.name, blank)
    if frame.height == 0:
        raise DataError(t.path, "no data rows" + (" after the header" if t.has_header else ""))
    problems: list[tuple[int, str, str]] = []  # (row, role, message)
    cleaned: dict[str, pl.Series] = {}
    for role in ("user", "item", "rating", "timestamp"):
        if role not in frame.columns:
            continue
        check = {"rating": lambda s: _check_rating(s, rating_range),
                 "timestamp": _check_timestamp}.get(role, _check_ids)
        try:
            series, problem = check(frame[role].alias(role))
        except TypeError as exc:
            raise DataError(t.path, str(exc), column=t.names[role]) from None
        cleaned[role] = series
        if problem:
            problems.append((problem[0], role, problem[1]))
    if problems:
        row, role, message = min(problems, key=lambda p: p[0])
        rec = int(frame["_rec"][row]) if "_rec" in frame.columns else row
        line, data_row = t.locate(rec)
        raise DataError(t.path, message, line=line, row=data_row, column=t.names[role])
    if "timestamp" in cleaned and (cleaned["timestamp"].max() or 0) > 10**11:
        log.warning("%s: timestamps look like milliseconds; recotorch expects seconds",
                    t.path.name)
    return pl.DataFrame(cleaned), blank


def _first(mask: pl.Series) -> int | None:
    mask = mask.fill_null(True)
    return int(mask.arg_max()) if mask.any() else None


def _check_ids(s: pl.Series) -> tuple[pl.Series, tuple[int, str] | None]:
    what = _ROLE_NAMES[s.name]
    if s.dtype in (pl.Categorical, pl.Enum):
        s = s.cast(pl.String)
    if s.dtype.is_integer():
        bad = _first(s.is_null())
        return s.cast(pl.Int64), None if bad is None else (bad, f"missing {what}")
    if s.dtype != pl.String:
        raise TypeError(f"{what}s must be integers or strings, not {s.dtype}")
    if (bad := _first(s.is_null())) is not None:
        return s, (bad, f"missing {what}")
    if s.str.contains(_INT_ID).all():
        return s.cast(pl.Int64), None
    stripped = s.str.strip_chars()
    if (bad := _first(stripped.str.len_bytes() == 0)) is not None:
        return s, (bad, f"missing {what} (blank)")
    if stripped.str.contains(_INT_ID).all():
        return stripped.cast(pl.Int64), None
    return stripped, None


def _check_rating(s: pl.Series, rating_range: tuple[float, float] | None):
    raw = s
    if s.dtype == pl.String:
        r = s.cast(pl.Float64, strict=False)
        if (r.is_null() & s.is_not_null()).any():
            r = s.str.strip_chars().cast(pl.Float64, strict=False)
        if (bad := _first((r.is_null() & s.is_not_null()).fill_null(False))) is not None:
            return r, (bad, f"not a number: {s[bad]!r}")
    elif s.dtype.is_numeric() or s.dtype == pl.Boolean:
        r = s.cast(pl.Float64)
    else:
        raise TypeError(f"ratings must be numbers, not {s.dtype}")
    r = r.alias("rating")
    bad_mask = ~r.is_finite()
    if rating_range is not None:
        lo, hi = rating_range
        bad_mask = bad_mask | (r < lo) | (r > hi)
    if (bad := _first(bad_mask)) is None:
        return r, None
    value = r[bad]
    if value is None:
        return r, (bad, "missing rating (empty field)")
    shown = f": {raw[bad]!r}" if raw.dtype == pl.String else ""
    if value != value:
        return r, (bad, f"rating is NaN{shown}")
    if value in (float("inf"), float("-inf")):
        return r, (bad, f"rating is not a finite number{shown or f': {value}'}")
    return r, (bad, f"rating {value:g} is outside rating_range {rating_range}")


def _check_timestamp(s: pl.Series):
    if s.dtype == pl.String:
        t = s.cast(pl.Int64, strict=False)
        if (t.is_null() & s.is_not_null()).any():
            t = _parse_times(s)
        if (bad := _first((t.is_null() & s.is_not_null()).fill_null(False))) is not None:
            return t, (bad, f"not a timestamp: {s[bad]!r} ({_TIME_HINT})")
    elif s.dtype.is_integer():
        t = s.cast(pl.Int64)
    elif s.dtype.is_float():
        whole = (s == s.floor()) & s.is_finite()
        if (bad := _first((~whole & s.is_not_null()).fill_null(False))) is not None:
            return s, (bad, f"timestamp {s[bad]} is not whole seconds")
        t = s.cast(pl.Int64)
    elif s.dtype == pl.Date:
        t = s.cast(pl.Datetime("ms")).dt.epoch("s")
    elif isinstance(s.dtype, pl.Datetime):
        t = s.dt.epoch("s")
    else:
        raise TypeError(f"timestamps must be integers or date/times, not {s.dtype}")
    t = t.alias("timestamp")
    bad = _first(t.is_null())
    return t, None if bad is None else (bad, "missing timestamp")


def _parse_times(s: pl.Series) -> pl.Series:
    """Integer seconds, whole-number floats, or ISO date/times -> epoch seconds (null if none)."""
    v = pl.col("v").str.strip_chars()
    iso = v.str.replace("T", " ", literal=True).str.replace(r"[zZ]$", "+00:00")
    as_float = v.cast(pl.Float64, strict=False)
    naive = [iso.str.to_datetime(fmt, strict=False).dt.epoch("s")
             for fmt in ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d")]
    return pl.DataFrame({"v": s}).select(pl.coalesce(
        v.cast(pl.Int64, strict=False),
        pl.when(as_float == as_float.floor()).then(as_float.cast(pl.Int64, strict=False)),
        iso.str.to_datetime("%Y-%m-%d %H:%M:%S%.f%#z", strict=False, time_zone="UTC").dt.epoch("s"),
        *naive,
    ).alias("timestamp"))["timestamp"]
