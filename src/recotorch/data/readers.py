"""Read interaction logs (CSV, TSV, other delimited text, Parquet, JSON Lines) into `Interactions`.

Everything is validated with whole-column Polars expressions; only when something is wrong
do we go back for the first offending row, and report it as a `DataError` naming the file,
line (1-based, counting the header) and column. Every refusal of a file is a `DataError`
(a `recotorch.errors.InputFileError`): a missing path, a directory, an unreadable, empty,
binary or corrupt file, a missing column (with the closest existing name suggested), or a
bad value.

File names are taken literally: `rat[1].csv` is that file, never a glob pattern. Text that
is gzip- or zstd-compressed (`.gz`, `.zst`, or any name: the first bytes decide) is
decompressed into a temporary file first, so errors still name a line.

The format (`format=` "csv", "tsv", "parquet" or "jsonl") is, unless given: Parquet when the
file starts with Parquet's magic bytes or is named .parquet/.pq; JSON Lines when named
.jsonl/.ndjson/.json or when its first non-blank character is `{`; otherwise delimited text,
whose separator comes from the name (.csv, .tsv, .tab) or is sniffed from the first lines (the
same count of one candidate on every line, tab first). Options that would do nothing are
refused: `sep`/`has_header` for Parquet or JSON Lines, positions for JSON Lines fields.

Messages name the options as Python keywords (`user=`); callers with other spellings (the
CLI's `--user-col`) pass `flags={"user": "--user-col", "sep": "--sep", ...}`.

Values: ids must be present (no nulls, no blank strings, no NUL bytes); ratings must be
finite numbers with |rating| <= `MAX_ABS_RATING` (1e9; anything beyond is a unit or parsing
mistake, and would lose precision as float32), and inside `rating_range` when given;
timestamps must be integer seconds or ISO date/times.

Duplicate (user, item) rows are **aggregated** into one pair by the one policy of every
constructor (`recotorch.data.aggregate`): the pair's row count, the sum of its values and its
latest time are kept, and its `rating` is the latest value (largest timestamp; the last in file
order when there is no timestamp, or on a tie). One line at INFO on the "recotorch" logger
says how many rows were merged; `meta` holds `rows_in`, `pairs_out` and
`duplicates_aggregated`. `duplicates="keep"` keeps every row (to split a log in time first).
Empty lines are skipped, logged and counted in `meta["blank_lines_skipped"]`. Nothing else is
dropped: `meta["rows_read"]` (data records in the file) == len(result) + blank lines +
duplicates aggregated.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from recotorch.data.errors import (
    DataError,
    MissingFileError,
    blank_records,
    first_long_record,
    first_undecodable,
    record_line,
)
from recotorch.data.interactions import Duplicates, Interactions
from recotorch.errors import OptionError

log = logging.getLogger("recotorch")

MAX_ABS_RATING = 1e9  # larger |rating| values are refused as absurd
_SEP_BY_SUFFIX = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
_PARQUET = {".parquet", ".pq"}
FORMATS = ("csv", "tsv", "parquet", "jsonl")
_SEP_BY_FORMAT = {"csv": ",", "tsv": "\t"}
_FORMAT_BY_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
                     ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
_JSONL_SAMPLE = 1000  # records whose keys name a JSON Lines file's fields
_HEAD_BYTES = 8 << 20  # decompressed bytes read to learn a compressed text file's columns and layout
_COMPRESSED_SUFFIXES = {".gz", ".gzip", ".zst", ".zstd"}
_COMPRESSION_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}
_FOREIGN_MAGIC = {b"PK\x03\x04": "a zip archive", b"BZh": "bzip2-compressed", b"\xfd7zXZ\x00": "xz-compressed",
                  b"7z\xbc\xaf\x27\x1c": "a 7-Zip archive", b"\x89HDF": "an HDF5 file", b"ARROW1": "an Arrow file"}
_SNIFF_ORDER = ("\t", "::", ",", ";", "|", " ")
_INT_ID = r"^-?(?:0|[1-9][0-9]{0,17})$"  # ints without leading zeros ("007" stays a string)
_ROLE_NAMES = {"user": "user id", "item": "item id", "rating": "rating", "timestamp": "timestamp"}
_TIME_HINT = "expected integer seconds since 1970 or an ISO date/time like 2024-01-31T12:00:00"
_INT64_MAX = 2**63 - 1
_PANIC = getattr(pl.exceptions, "PanicException", RuntimeError)  # a Polars bug on odd input


@dataclass
class _Source:
    """A file to read: `path` as the user named it (every message names it), `file` what is read."""

    path: Path
    file: Path  # `path`, or a decompressed copy of it
    kind: str  # "text", "parquet" or "jsonl"
    suffix: str  # the format suffix, compression suffix removed: "data.tsv.gz" -> ".tsv"
    format: str | None = None  # as given by the caller (one of FORMATS), else None

    @property
    def parquet(self) -> bool:
        return self.kind == "parquet"


@dataclass
class _Table:
    """Raw columns renamed to roles, plus what is needed to point at a line."""

    path: Path
    frame: pl.DataFrame
    names: dict[str, str]  # role -> column name as the user knows it
    locate: Callable[[int], tuple[int | None, int | None]]  # record index -> (line, row)
    text: bool
    has_header: bool
    blank: list[int]  # record indices of empty lines
    skipped: int = 0  # empty lines the reader itself skipped (JSON Lines)


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
    format: str | None = None,
    flags: Mapping[str, str] | None = None,
    duplicates: Duplicates = "aggregate",
) -> Interactions:
    """Read a CSV/TSV/delimited-text, Parquet or JSON Lines file of interactions (text may be .gz/.zst).

    Columns are named by header name or 0-based position (JSON Lines: by field name). Without
    a header, named columns are taken in the order user, item, rating, timestamp (skipping
    those set to None). `format` ("csv", "tsv", "parquet", "jsonl") overrides the detection
    described in the module docstring; `flags` renames options in messages (see there).
    `rating`/`timestamp` = None reads implicit data. `sep` comes from the extension (.csv, .tsv)
    or is sniffed; it may be several characters ("::"). Ids that all look like integers
    (no leading zeros; judged on the first 1,000 rows, then on the whole column when a later
    value is not one) are kept as Int64, any others as strings. Timestamps may be integer
    epoch seconds or ISO date/times (converted to epoch seconds, UTC when no offset is given).
    Non-UTF-8 files (`encoding="latin1"`, ...) are transcoded in memory.
    Repeated (user, item) rows are aggregated (module docstring); `duplicates="keep"` keeps them.
    Raises `DataError` (naming file, line and column) for anything it cannot use.

    >>> data = read_interactions("ratings.csv", user="userId", item="movieId")  # doctest: +SKIP
    """
    path = Path(path)
    roles = {"user": user, "item": item, "rating": rating, "timestamp": timestamp}
    wanted = {role: col for role, col in roles.items() if col is not None}
    checks = {"user": _check_ids, "item": _check_ids,
              "rating": lambda s: _check_rating(s, rating_range), "timestamp": _check_timestamp}
    with _open_source(path, format, flags) as src:
        table = _load(src, wanted, sep=sep, has_header=has_header, encoding=encoding, flags=flags)
        frame, blank = _validate(table, {role: checks[role] for role in wanted})
    rows_read = table.frame.height + table.skipped
    if duplicates not in ("aggregate", "keep"):
        raise OptionError("duplicates", f"must be 'aggregate' or 'keep', got {duplicates!r}")
    inter = Interactions.from_frame(
        frame, rating="rating" if "rating" in frame.columns else None,
        timestamp="timestamp" if "timestamp" in frame.columns else None, source=str(path),
        duplicates="keep")
    if duplicates == "aggregate":  # the one policy (recotorch.data.aggregate), the value named as in the file
        inter = inter.aggregated(value_name=str(table.names.get("rating", "rating")))
    meta = {**inter.meta, "origin": f"file {path}", "path": str(path), "rows_read": rows_read,
            "blank_lines_skipped": blank}
    return replace(inter, meta=meta)


def file_columns(path: str | Path, *, sep: str | None = None, has_header: bool = True,
                 encoding: str = "utf8", format: str | None = None,
                 flags: Mapping[str, str] | None = None) -> list[str]:
    """Column names of a CSV/TSV/delimited-text (.gz/.zst too), Parquet or JSON Lines file; reads no rows.

    Without a header the names are "column 1", "column 2", ...; JSON Lines fields are the keys
    of the first 1,000 records, in order of appearance. Raises `DataError`.
    """
    path = Path(path)
    with _open_source(path, format, flags, head=True) as src:
        _check_layout(src, sep, has_header, flags)
        if src.parquet:
            return list(_parquet_schema(src))
        if src.kind == "jsonl":
            return _jsonl_fields(src)
        head = _text_head(src, encoding)
        return _header(src, head, sep, has_header, flags)[0]


def file_layout(path: str | Path, *, sep: str | None = None, format: str | None = None,
                encoding: str = "utf8", flags: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """(format, separator) a file is read with: format "parquet", "jsonl" (separator None), "csv",
    "tsv", or "text" for delimited text whose name does not tell the separator (then sniffed, or `sep`)."""
    path = Path(path)
    with _open_source(path, format, flags, head=True) as src:
        if src.kind != "text":
            return src.kind, None
        kind = src.format or _FORMAT_BY_SUFFIX.get(src.suffix, "text")
        return kind, _header(src, _text_head(src, encoding), sep, True, flags)[1]


def read_columns(path: str | Path, columns: Sequence[str | int] | Mapping[str, str | int], *,
                 sep: str | None = None, has_header: bool = True, encoding: str = "utf8",
                 format: str | None = None, flags: Mapping[str, str] | None = None,
                 as_read: Sequence[str | int] = ()) -> pl.DataFrame:
    """Id columns (users of a pairs or users file) as a DataFrame named as in the file.

    Each column is checked like the ids of `read_interactions`: no missing or blank values,
    no NUL bytes; Int64 when every value looks like an integer, else stripped strings. Rows
    stay in file order (no de-duplication); empty lines are skipped and logged. Raises
    `DataError` naming file, line and column. With a mapping {role: column} the frame's
    columns are named by role (and `flags` may name the option of each role). Columns listed in
    `as_read` (as given in `columns`) are returned as read, not checked as ids (e.g. names, genres).
    """
    path = Path(path)
    if not columns:
        raise OptionError("columns", "name at least one column")
    given = list(columns.values()) if isinstance(columns, Mapping) else list(columns)
    if len(set(given)) != len(given):
        raise OptionError("columns", f"a column is named twice: {given}")
    wanted = dict(columns) if isinstance(columns, Mapping) else {f"c{k}": col for k, col in enumerate(columns)}
    with _open_source(path, format, flags) as src:
        table = _load(src, wanted, sep=sep, has_header=has_header, encoding=encoding, flags=flags)
        frame, _ = _validate(table, {role: _as_read if col in as_read else _check_ids for role, col in wanted.items()})
    frame.columns = list(wanted) if isinstance(columns, Mapping) else [table.names[role] for role in wanted]
    return frame


# ---- opening: existence, type, compression -------------------------------------------------
@contextmanager
def _open_source(path: Path, fmt: str | None = None, flags: Mapping[str, str] | None = None,
                 head: bool = False) -> Iterator[_Source]:
    """Check that `path` is a readable, non-empty file; decompress it when gzip/zstd; tell its kind.

    `head`: only the start of compressed text is needed (its columns, its layout): the first
    `_HEAD_BYTES`, cut after the last whole line, are decompressed.
    """
    if fmt is not None and fmt not in FORMATS:
        raise OptionError(_flag(flags, "format"), f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
    magic = _first_bytes(path)
    suffix = _format_suffix(path)
    codec = next((name for m, name in _COMPRESSION_MAGIC.items() if magic.startswith(m)), None)
    if codec is None:
        yield _Source(path, path, _kind(path, path, magic, suffix, fmt, flags), suffix, fmt)
        return
    with tempfile.TemporaryDirectory(prefix="recotorch-read-") as tmp:
        plain = Path(tmp) / "decompressed"
        whole = _decompress(path, plain, codec, limit=_HEAD_BYTES if head else None)
        if plain.stat().st_size == 0:
            raise DataError(path, f"the file is empty (after {codec} decompression)")
        with plain.open("rb") as f:
            inner = f.read(8)
        if not whole and inner.startswith(b"PAR1"):  # Parquet keeps its schema at the end
            _decompress(path, plain, codec)
        yield _Source(path, plain, _kind(path, plain, inner, suffix, fmt, flags), suffix, fmt)


def _kind(path: Path, file: Path, magic: bytes, suffix: str, fmt: str | None,
          flags: Mapping[str, str] | None) -> str:
    """"parquet", "jsonl" or "text": the format given, checked against the content, else detected."""
    is_parquet = _is_parquet(path, magic, suffix if fmt is None else "")
    if fmt is not None:
        if magic.startswith(b"PAR1") and fmt != "parquet":
            raise DataError(path, f"is a Parquet file, not {fmt} ({_flag(flags, 'format')} {fmt} was given)")
        if fmt == "parquet" and not is_parquet:
            raise DataError(path, f"is not a Parquet file (no Parquet magic bytes), but "
                                  f"{_flag(flags, 'format')} parquet was given")
        return "text" if fmt in _SEP_BY_FORMAT else fmt
    if is_parquet:
        return "parquet"
    if _FORMAT_BY_SUFFIX.get(suffix) == "jsonl":
        return "jsonl"
    if suffix not in _SEP_BY_SUFFIX and _first_text(file).startswith(b"{"):
        return "jsonl"  # a record per line, each a JSON object
    return "text"


def _first_text(file: Path) -> bytes:
    """The start of a text file from its first non-blank character (a UTF-8 BOM skipped)."""
    with file.open("rb") as f:
        return f.read(1 << 12).removeprefix(b"\xef\xbb\xbf").lstrip()


def _flag(flags: Mapping[str, str] | None, name: str) -> str:
    """How messages name option `name`: the caller's spelling (a CLI flag) or the Python keyword."""
    return (flags or {}).get(name, name)


def _check_layout(src: _Source, sep: str | None, has_header: bool, flags: Mapping[str, str] | None) -> None:
    """`sep` and `has_header` are for delimited text: refused, not ignored, for Parquet and JSON Lines."""
    if src.kind == "text":
        return
    what = "Parquet" if src.parquet else "JSON Lines"
    if sep is not None:
        raise OptionError(_flag(flags, "sep"), f"{src.path} is {what}, which has no field separator")
    if not has_header:
        raise OptionError(_flag(flags, "has_header"), f"{src.path} is {what}, whose columns are always named")


def _first_bytes(path: Path) -> bytes:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise MissingFileError(path, "no such file") from None
    except OSError as exc:
        raise DataError(path, f"cannot be read: {exc.strerror or exc}") from None
    if path.is_dir():
        raise DataError(path, "is a directory, not a file")
    if not path.is_file():
        raise DataError(path, "is not a regular file")
    if info.st_size == 0:
        raise DataError(path, "the file is empty")
    try:
        with path.open("rb") as f:
            return f.read(8)
    except OSError as exc:
        raise DataError(path, f"cannot be read: {exc.strerror or exc}") from None


def _format_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED_SUFFIXES:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _is_parquet(path: Path, magic: bytes, suffix: str) -> bool:
    if magic.startswith(b"PAR1") or suffix in _PARQUET:
        return True
    for m, what in _FOREIGN_MAGIC.items():
        if magic.startswith(m):
            raise DataError(path, f"is {what}, not delimited text or Parquet; recotorch reads CSV/TSV "
                            "(plain, .gz or .zst) and Parquet")
    return False


def _decompress(path: Path, out: Path, codec: str, limit: int | None = None) -> bool:
    """Decompress `path` into `out`; with `limit`, stop after about that many bytes, cut after the last
    whole line. True when the whole stream was decompressed."""
    import pyarrow as pa  # only for compressed input

    try:
        with path.open("rb") as raw, pa.input_stream(raw, compression=codec) as stream, out.open("wb") as dst:
            written, line_end = 0, 0
            while chunk := stream.read(1 << 22):
                dst.write(chunk)
                if (nl := chunk.rfind(b"\n")) >= 0:
                    line_end = written + nl + 1
                written += len(chunk)
                if limit is not None and written >= limit:
                    if line_end:
                        dst.truncate(line_end)
                    return False
        return True
    except (OSError, pa.ArrowException) as exc:
        if out.exists() and isinstance(exc, OSError) and exc.errno is not None:
            raise DataError(path, f"cannot decompress into a temporary file: {exc.strerror}") from None
        raise DataError(path, f"the {codec} data is truncated or corrupt ({str(exc).splitlines()[0]})") from None


def _load(src: _Source, wanted: dict, *, sep: str | None, has_header: bool, encoding: str,
          flags: Mapping[str, str] | None = None) -> _Table:
    _check_layout(src, sep, has_header, flags)
    if src.parquet:
        return _read_parquet(src, wanted, flags)
    if src.kind == "jsonl":
        return _read_jsonl(src, wanted, flags)
    return _read_text(src, wanted, sep=sep, has_header=has_header, encoding=encoding, flags=flags)


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


# ---- text ----------------------------------------------------------------------------------
def _text_head(src: _Source, encoding: str) -> tuple[str, str, int]:
    """(codec name, the first 64 KiB decoded, number of blank lines before the first record)."""
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise OptionError("encoding", f"unknown text encoding {encoding!r}") from None
    with src.file.open("rb") as f:
        head_bytes = f.read(1 << 16)
    if b"\x00" in head_bytes and "\x00".encode(codec) == b"\x00":
        line = head_bytes.count(b"\n", 0, head_bytes.index(b"\x00")) + 1
        raise DataError(src.path, "holds a NUL byte: a binary file, not delimited text", line=line)
    head = head_bytes.decode(codec, errors="replace").lstrip("\ufeff")
    if not head.strip():
        raise DataError(src.path, "the file holds only blank lines")
    lead = 0
    for line in head.split("\n"):
        if line.strip("\r"):
            break
        lead += 1
    return codec, head, lead


def _header(src: _Source, head_info: tuple[str, str, int], sep: str | None,
            has_header: bool, flags: Mapping[str, str] | None = None) -> tuple[list[str], str, int]:
    """(column names, separator, number of fields) from the first record."""
    _, head, lead = head_info
    if sep is not None and (sep == "" or any(c in sep for c in '\r\n"')):
        raise OptionError(_flag(flags, "sep"), f"cannot separate fields with {sep!r}")
    by_name = _SEP_BY_FORMAT.get(src.format or "") or (None if src.format else _SEP_BY_SUFFIX.get(src.suffix))
    sep = sep or by_name or _sniff(src.path, head, flags)
    rest = "\n".join(head.split("\n")[lead:])
    if len(sep) == 1:
        try:
            fields = next(csv.reader(io.StringIO(rest, newline=""), delimiter=sep), [])
        except csv.Error as exc:
            raise DataError(src.path, f"cannot read the first line: {exc}", line=lead + 1) from None
    else:
        fields = rest.split("\n", 1)[0].rstrip("\r").split(sep)
    names = fields if has_header else [f"column {k + 1}" for k in range(len(fields))]
    return names, sep, len(fields)


def _read_text(src: _Source, wanted: dict, *, sep: str | None, has_header: bool,
               encoding: str, flags: Mapping[str, str] | None = None) -> _Table:
    path, file = src.path, src.file
    head_info = _text_head(src, encoding)
    codec, lead = head_info[0], head_info[2]
    fields, sep, n_fields = _header(src, head_info, sep, has_header, flags)
    header = fields if has_header else None
    positions = _positions(path, wanted, header, n_fields, flags)
    names = {role: header[pos] if header else (wanted[role] if isinstance(wanted[role], str)
                                               else f"column {pos + 1}")
             for role, pos in positions.items()}
    source: str | bytes = str(file)
    skip = lead + has_header
    locate = lambda rec: (record_line(file, rec + skip, sep=sep, encoding=codec), None)  # noqa: E731
    try:
        if codec != "utf-8":  # Polars reads UTF-8 only: transcode in memory
            source = file.read_bytes().decode(codec).encode("utf-8")
        if len(sep) == 1:
            frame = _read_delimited(path, source, sep, header, n_fields, positions)
        else:
            frame = _read_multichar(path, source, sep, has_header, positions, n_fields, locate)
    except (pl.exceptions.PolarsError, UnicodeDecodeError, _PANIC) as exc:
        raise _diagnose(src, codec, encoding, sep, header, n_fields, names, positions, exc, flags) from None
    blank: list[int] = []
    all_null = frame.select(pl.all_horizontal(pl.all().is_null()).alias("b"))["b"] if frame.width else None
    if all_null is not None and all_null.any():
        # Both an empty line and ",,," read as nulls: only the CSV module's view of the raw
        # lines tells them apart. If it counts records differently, no line is called blank.
        blank = blank_records(file, frame.height, sep=sep, has_header=has_header, encoding=codec) or []
        blank = [k for k in blank if all_null[k]]
    return _Table(path, frame, names, locate, text=True, has_header=has_header, blank=blank)


def _read_delimited(path: Path, source: str | bytes, sep: str, header: list[str] | None, n_fields: int,
                    positions: dict) -> pl.DataFrame:
    """Read typed when the first rows say the values are plain numbers, else as text.

    Typed reading needs about half the memory; a value that does not parse sends us back
    to reading text, where validation finds and names it. Columns are taken by position, so
    repeated or empty header names do not matter.
    """
    role_at = {pos: role for role, pos in positions.items()}

    def read(dtypes: dict, n_rows: int | None = None) -> pl.DataFrame:
        overrides = [dtypes.get(role_at.get(k), pl.String) for k in range(n_fields)]
        frame = pl.read_csv(source, separator=sep, has_header=header is not None,
                            columns=list(positions.values()), schema_overrides=overrides,
                            infer_schema=False, n_rows=n_rows, glob=False)
        frame.columns = list(positions)
        return frame

    if header is not None:  # the CSV module and Polars must agree on where the fields are
        width = pl.read_csv(source, separator=sep, n_rows=0, infer_schema=False, glob=False).width
        if width != n_fields:
            raise DataError(path, f"the header reads as {n_fields} fields here but {width} to Polars "
                            "(a quote or line break inside it?)", line=1)
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
    if role not in ("rating", "timestamp"):  # ids
        return pl.Int64 if s.str.contains(_INT_ID).all() else pl.String
    target = pl.Float64 if role == "rating" else pl.Int64
    return target if s.cast(target, strict=False).null_count() == 0 else pl.String


def _positions(path: Path, wanted: dict, header: list[str] | None, n_fields: int,
               flags: Mapping[str, str] | None = None) -> dict:
    """0-based field position of each role."""
    out: dict[str, int] = {}
    for k, (role, col) in enumerate(wanted.items()):
        if isinstance(col, bool) or not isinstance(col, (int, str)):
            raise OptionError(_flag(flags, role), f"a column is a name or a 0-based position, not {col!r}")
        if isinstance(col, int):
            pos = col
        elif header is None:
            pos = k
        elif col in header:
            pos = header.index(col)
        else:
            raise DataError(path, _no_column(role, col, header, flags), line=1, column=col)
        if not 0 <= pos < n_fields:
            what = "the header has" if header else "the first line has"
            label = role if role in _ROLE_NAMES else "the column"
            raise DataError(path, f"{label} is column {pos + 1}, but {what} {n_fields} field(s)",
                            line=1, column=col if isinstance(col, str) else None)
        if pos in out.values():
            other = next(r for r, p in out.items() if p == pos)
            raise OptionError(_flag(flags, role), f"reads the same column ({col!r}) as {_flag(flags, other)}")
        out[role] = pos
    return out


def _no_column(role: str, col: str, header: Sequence[str], flags: Mapping[str, str] | None = None,
               what: str = "column") -> str:
    """'no column ...' with the closest existing name and, for optional roles, how to do without."""
    by_case = [h for h in header if h.strip().lower() == col.strip().lower()]
    close = by_case or difflib.get_close_matches(col, list(header), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    if len(header) == 1 and any(c in header[0] for c in ",;\t|:"):
        sep = _flag(flags, "sep")
        hint = f"the header reads as one field: is the separator right ({sep}{' ' if sep[:2] == '--' else '='}...)? "
    if header and what == "column" and all(h.strip().lstrip("-").replace(".", "", 1).isdigit() for h in header):
        no_header = _flag(flags, "has_header")
        hint = (f"the first line looks like data, not a header: pass "
                f"{no_header if no_header.startswith('--') else no_header + '=False'}; ")
    shown = ", ".join(map(repr, header[:30])) + (", ..." if len(header) > 30 else "")
    option = _flag(flags, role)
    if option.startswith("--"):  # a command-line flag
        none = f", or {option} '' if there is none" if role in ("rating", "timestamp") else ""
        hint += f"choose it with {option} NAME{none}"
    elif role in _ROLE_NAMES:
        none = f", or {role}=None if there is none" if role in ("rating", "timestamp") else ""
        hint += f"pass {role}=<column name>{none}"
    else:
        hint = hint.rstrip()
    return f"no {what} {col!r} (the {what}s are {shown}){'; ' + hint if hint else ''}"


def _sniff(path: Path, head: str, flags: Mapping[str, str] | None = None) -> str:
    lines = [ln.rstrip("\r") for ln in head.split("\n") if ln.strip()]
    if len(head) >= 1 << 16:
        lines = lines[:-1] or lines  # the last line may be cut short
    counts = {cand: [ln.count(cand) for ln in lines[:50]] for cand in _SNIFF_ORDER}
    option = _flag(flags, "sep")
    for cand, seen in counts.items():  # the same number on every line, else on every line at all
        if min(seen) > 0 and len(set(seen)) == 1:
            if cand != "\t" and min(counts["\t"]) > 0:  # tabs on every line, in varying numbers: say so
                how = f"{option} SEP" if option.startswith("--") else f"{option}=..."
                raise DataError(path, f"cannot tell the field separator: tabs and {cand!r} are on every line; "
                                      f"give it ({how})", line=1)
            return cand
    for cand, seen in counts.items():
        if min(seen) > 0:
            return cand
    raise DataError(path, f"cannot tell the field separator; {'give' if option.startswith('--') else 'pass'} "
                          f"{option}{' SEP' if option.startswith('--') else '=...'}", line=1)


def _read_multichar(path: Path, source: str | bytes, sep: str, has_header: bool,
                    positions: dict, n_fields: int, locate: Callable) -> pl.DataFrame:
    """Separators like "::" (MovieLens .dat): read whole lines, split with a string kernel."""
    lines = pl.read_csv(source, separator="\x1f", has_header=False, quote_char=None,
                        infer_schema=False, new_columns=["_line"], glob=False)["_line"]
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
    return parts.select(pl.when(pl.col(cols[pos]).str.strip_chars("\r") != "").then(pl.col(cols[pos]))
                        .alias(role) for role, pos in positions.items())


def _diagnose(src: _Source, codec: str, encoding: str, sep: str, header: list[str] | None,
              n_fields: int, names: dict, positions: dict, exc: BaseException,
              flags: Mapping[str, str] | None = None) -> DataError:
    """After a failed read: name the first undecodable byte, or overlong record, by line."""
    path, file = src.path, src.file
    if found := first_undecodable(file, codec):
        line, byte, prefix = found
        field = prefix.count(sep.encode()) if b'"' not in prefix else -1
        by_pos = {pos: names[role] for role, pos in positions.items()}
        column = by_pos.get(field) or (header[field] if header and 0 <= field < len(header) else None)
        hint = ' (is it Latin-1? pass encoding="latin1")' if codec == "utf-8" else ""
        if hint and flags and "encoding" not in flags:  # a caller without an encoding option (the CLI)
            hint = " (is it Latin-1? convert it to UTF-8 first, e.g. iconv -f latin1 -t utf-8 FILE > NEW)"
        return DataError(path, f"cannot decode byte 0x{byte:02x} as {encoding!r}{hint}",
                         line=line, column=column)
    if len(sep) == 1 and (long := first_long_record(file, n_fields, sep=sep, encoding=codec)):
        what = "the header has" if header else "the first line has"
        return DataError(path, f"{long[1]} fields, but {what} {n_fields}", line=long[0])
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return DataError(path, f"cannot be read as {sep!r}-separated text: {first}")


# ---- parquet -------------------------------------------------------------------------------
def _parquet_schema(src: _Source) -> pl.Schema:
    try:
        return pl.scan_parquet(src.file, glob=False).collect_schema()
    except (Exception, _PANIC) as exc:
        raise DataError(src.path, f"not a readable Parquet file ({_first_line(exc)})") from None


def _read_parquet(src: _Source, wanted: dict, flags: Mapping[str, str] | None = None) -> _Table:
    schema = list(_parquet_schema(src))
    positions = _positions(src.path, wanted, schema, len(schema), flags)
    names = {role: schema[pos] for role, pos in positions.items()}
    try:
        frame = pl.read_parquet(src.file, columns=list(names.values()), glob=False)
    except (Exception, _PANIC) as exc:
        raise DataError(src.path, f"corrupt Parquet data ({_first_line(exc)})") from None
    frame.columns = list(names)
    return _Table(src.path, frame, names, lambda rec: (None, rec + 1), text=False, has_header=False,
                  blank=[])


# ---- JSON Lines ----------------------------------------------------------------------------
def _jsonl_records(file: Path) -> Iterator[tuple[int, str]]:
    """(1-based line, text) of each non-blank line."""
    with file.open("rb") as f:  # lines end at b"\n" only, as for Polars
        for line_no, raw in enumerate(f, 1):
            if raw.strip():
                yield line_no, raw.decode("utf-8", errors="replace")


def _jsonl_problem(line: str) -> str | None:
    """Why one line is not a JSON object (None if it is one)."""
    def finite(text: str) -> float:
        value = float(text)
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"number {text} is out of range")
        return value

    try:
        record = json.loads(line, parse_float=finite, parse_constant=lambda c: finite("nan"))
    except ValueError as exc:
        return f"not valid JSON ({str(exc).split(': line')[0]})"
    if not isinstance(record, dict):
        return f"expected a JSON object per line (JSON Lines), got a JSON {type(record).__name__}"
    return None


def _jsonl_fields(src: _Source) -> list[str]:
    """Keys of the first `_JSONL_SAMPLE` records in order of appearance; a bad line among them is refused."""
    if _first_text(src.file).startswith(b"["):
        raise DataError(src.path, "is one JSON array, not JSON Lines (one JSON object per line); convert it, "
                                  "e.g. jq -c '.[]' FILE > FILE.jsonl")
    fields: dict[str, None] = {}
    for n, (line_no, line) in enumerate(_jsonl_records(src.file)):
        if n == _JSONL_SAMPLE:
            break
        if problem := _jsonl_problem(line):
            raise DataError(src.path, problem, line=line_no)
        fields.update(dict.fromkeys(json.loads(line)))
    if not fields:
        raise DataError(src.path, "the file holds only blank lines")
    return list(fields)


def _read_jsonl(src: _Source, wanted: dict, flags: Mapping[str, str] | None = None) -> _Table:
    """JSON Lines: the wanted fields read as text (then typed by validation, as CSV values are)."""
    fields = _jsonl_fields(src)
    for role, col in wanted.items():
        if isinstance(col, bool) or not isinstance(col, str):
            raise OptionError(_flag(flags, role), f"JSON Lines fields are named, not numbered: give a field name "
                                                  f"(the fields are {', '.join(map(repr, fields[:30]))})")
        if col not in fields:
            raise DataError(src.path, _no_column(role, col, fields, flags, what="field"), column=col)
    _positions(src.path, wanted, fields, len(fields), flags)  # the same field twice is refused there
    try:
        frame = pl.read_ndjson(src.file, schema={col: pl.String for col in dict.fromkeys(wanted.values())})
    except (pl.exceptions.PolarsError, _PANIC) as exc:
        for line_no, line in _jsonl_records(src.file):
            if problem := _jsonl_problem(line):
                raise DataError(src.path, problem, line=line_no) from None
        raise DataError(src.path, f"cannot be read as JSON Lines: {_first_line(exc)}") from None
    frame = frame.select(pl.col(col).alias(role) for role, col in wanted.items())
    skipped = _count_lines(src.file) - frame.height

    def locate(rec: int) -> tuple[int | None, int | None]:
        for n, (line_no, _) in enumerate(_jsonl_records(src.file)):
            if n == rec:
                return line_no, None
        return None, rec + 1

    if skipped:
        log.warning("%s: skipped %d blank line(s)", src.path.name, skipped)
    return _Table(src.path, frame, dict(wanted), locate, text=True, has_header=False, blank=[],
                  skipped=max(skipped, 0))


def _count_lines(file: Path) -> int:
    """Lines in a text file (a last line without a newline counts)."""
    count, last = 0, b"\n"
    with file.open("rb") as f:
        while chunk := f.read(1 << 22):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, _PANIC):  # a Rust panic message says nothing useful to the user
        return "the Parquet reader failed on it"
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


# ---- validation ----------------------------------------------------------------------------
Check = Callable[[pl.Series], tuple[pl.Series, "tuple[int, str] | None"]]


def _validate(t: _Table, checks: dict[str, Check]) -> tuple[pl.DataFrame, int]:
    """Typed, checked columns (one per role, in `checks` order); the number of blank lines."""
    frame, blank = t.frame, len(t.blank)
    if blank:
        keep = np.ones(frame.height, dtype=bool)
        keep[t.blank] = False
        frame = frame.with_row_index("_rec").filter(pl.Series(keep))
        log.warning("%s: skipped %d blank line(s)", t.path.name, blank)
    if frame.height == 0:
        raise DataError(t.path, "no data rows" + (" after the header" if t.has_header else ""))
    problems: list[tuple[int, str, str]] = []  # (row, role, message)
    cleaned: dict[str, pl.Series] = {}
    for role, check in checks.items():
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
    return pl.DataFrame(cleaned), blank + t.skipped


def _first(mask: pl.Series) -> int | None:
    mask = mask.fill_null(True)
    return int(mask.arg_max()) if mask.any() else None


def _as_read(s: pl.Series) -> tuple[pl.Series, None]:
    return s, None


def _check_ids(s: pl.Series) -> tuple[pl.Series, tuple[int, str] | None]:
    what = _ROLE_NAMES.get(s.name, "value")
    if s.dtype in (pl.Categorical, pl.Enum):
        s = s.cast(pl.String)
    if s.dtype == pl.Null:
        return s, (0, f"missing {what}")
    if s.dtype.is_integer():
        if (bad := _first(s.is_null())) is not None:
            return s, (bad, f"missing {what}")
        if s.dtype == pl.UInt64 and (bad := _first(s > _INT64_MAX)) is not None:
            return s, (bad, f"{what} {s[bad]} is too large for a 64-bit id")
        return s.cast(pl.Int64), None
    if s.dtype != pl.String:
        raise TypeError(f"{what}s must be integers or strings, not {s.dtype}")
    if (bad := _first(s.is_null())) is not None:
        return s, (bad, f"missing {what}")
    if s.str.contains(_INT_ID).all():
        return s.cast(pl.Int64), None
    stripped = s.str.strip_chars()
    if (bad := _first(stripped.str.len_bytes() == 0)) is not None:
        return s, (bad, f"missing {what} (blank)")
    if (bad := _first(s.str.contains("\x00", literal=True))) is not None:
        return s, (bad, f"{what} holds a NUL byte")
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
            return r, (bad, f"not a number: {_shown(s[bad])}")
    elif s.dtype.is_numeric() or s.dtype == pl.Boolean:
        r = s.cast(pl.Float64)
    elif s.dtype == pl.Null:
        return s, (0, "missing rating")
    else:
        raise TypeError(f"ratings must be numbers, not {s.dtype}")
    r = r.alias("rating")
    bad_mask = ~r.is_finite() | (r.abs() > MAX_ABS_RATING)
    if rating_range is not None:
        lo, hi = rating_range
        bad_mask = bad_mask | (r < lo) | (r > hi)
    if (bad := _first(bad_mask)) is None:
        return r, None
    value = r[bad]
    if value is None:
        return r, (bad, "missing rating (empty field)")
    shown = f": {_shown(raw[bad])}" if raw.dtype == pl.String else ""
    if value != value:
        return r, (bad, f"rating is NaN{shown}")
    if value in (float("inf"), float("-inf")):
        return r, (bad, f"rating is not a finite number{shown or f': {value}'}")
    if abs(value) > MAX_ABS_RATING:
        return r, (bad, f"rating {value:g} is absurd (recotorch refuses |rating| > {MAX_ABS_RATING:g})")
    return r, (bad, f"rating {value:g} is outside rating_range {rating_range}")


def _shown(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _check_timestamp(s: pl.Series):
    if s.dtype == pl.String:
        t = s.cast(pl.Int64, strict=False)
        if (t.is_null() & s.is_not_null()).any():
            t = _parse_times(s)
        if (bad := _first((t.is_null() & s.is_not_null()).fill_null(False))) is not None:
            return t, (bad, f"not a timestamp: {_shown(s[bad])} ({_TIME_HINT})")
    elif s.dtype == pl.UInt64:
        if (bad := _first((s > _INT64_MAX).fill_null(False))) is not None:
            return s, (bad, f"timestamp {s[bad]} is out of range")
        t = s.cast(pl.Int64)
    elif s.dtype.is_integer():
        t = s.cast(pl.Int64)
    elif s.dtype.is_float():
        whole = (s == s.floor()) & s.is_finite()
        if (bad := _first((~whole & s.is_not_null()).fill_null(False))) is not None:
            return s, (bad, f"timestamp {s[bad]} is not whole seconds")
        if (bad := _first((s.abs() >= 2.0**63).fill_null(False))) is not None:
            return s, (bad, f"timestamp {s[bad]:g} is out of range")
        t = s.cast(pl.Int64)
    elif s.dtype == pl.Date:
        t = s.cast(pl.Datetime("ms")).dt.epoch("s")
    elif isinstance(s.dtype, pl.Datetime):
        t = s.dt.epoch("s")
    elif s.dtype == pl.Null:
        return s, (0, "missing timestamp")
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
