"""Errors raised while reading data, and helpers that find the line a problem is on."""

from __future__ import annotations

import csv
from pathlib import Path

from recotorch.errors import InputFileError


class DataError(InputFileError):
    """A problem with input data, located as precisely as possible.

    `path` is the file (or URL), `line` the 1-based line in the file counting the header line
    (None where lines do not apply, e.g. Parquet), `row` the 1-based data row (Parquet), and
    `column` the field name. `str(err)` reads like
    ``ratings.csv, line 17, column 'rating': not a number: 'abc'``.
    """

    def __init__(
        self,
        path: str | Path | None,
        message: str,
        *,
        line: int | None = None,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        self.path = path
        self.message = message
        self.line = line
        self.column = column
        self.row = row
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.path is not None:
            text = str(self.path)
            where.append(text if "://" in text else Path(text).name)
        if self.line is not None:
            where.append(f"line {self.line}")
        elif self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def __str__(self) -> str:
        return self._format()

    def __reduce__(self):  # keep the keyword-only fields when pickled (multiprocessing)
        return (_rebuild, (type(self), self.path, self.message, self.line, self.column, self.row))


class MissingFileError(DataError, FileNotFoundError):
    """The input path does not exist (also a `FileNotFoundError`, for callers that catch that)."""


class ChecksumError(DataError):
    """A downloaded or local archive does not have the expected checksum."""


class DownloadError(DataError):
    """The publisher (or package index) could not be reached or refused the request."""


def _rebuild(cls: type[DataError], path, message, line, column, row) -> DataError:
    return cls(path, message, line=line, column=column, row=row)


# ---- finding where a text file goes wrong (only called once something already failed) -------
_CHUNK = 1 << 22


def record_line(path: Path, record: int, *, sep: str, encoding: str = "utf-8") -> int | None:
    """1-based line on which 0-based record `record` (header included) starts.

    Arithmetic unless the file has quotes (a quoted field may span lines); then we count.
    """
    if len(sep) != 1 or not _contains(path, b'"'):
        return record + 1
    try:
        with Path(path).open(newline="", encoding=encoding, errors="replace") as f:
            reader, prev = csv.reader(f, delimiter=sep), 0
            for k, _ in enumerate(reader):
                if k == record:
                    return prev + 1
                prev = reader.line_num
    except csv.Error:  # e.g. a field over csv.field_size_limit(): the line stays unknown
        return None
    return None


def blank_records(path: Path, n_records: int, *, sep: str, has_header: bool,
                  encoding: str = "utf-8") -> list[int] | None:
    """0-based data records (after the header) that are empty lines, as the CSV reader counts them.

    Leading blank lines are skipped, as Polars skips them. Returns None when this count of
    records disagrees with `n_records` (then no line can safely be called blank).
    """
    started, k, out = False, 0, []
    try:
        with Path(path).open(newline="", encoding=encoding, errors="replace") as f:
            reader = csv.reader(f, delimiter=sep) if len(sep) == 1 else (
                [x] if x.strip("\r\n") else [] for x in f)
            for record in reader:
                if not started:
                    if not record:
                        continue
                    started = True
                    if has_header:
                        continue
                if not record:
                    out.append(k)
                k += 1
    except csv.Error:
        return None
    return out if k == n_records else None


def first_long_record(path: Path, n_fields: int, *, sep: str,
                      encoding: str = "utf-8") -> tuple[int, int] | None:
    """(line, number of fields) of the first record with more than `n_fields` fields."""
    try:
        with Path(path).open(newline="", encoding=encoding, errors="replace") as f:
            reader, prev = csv.reader(f, delimiter=sep), 0
            for record in reader:
                if len(record) > n_fields:
                    return prev + 1, len(record)
                prev = reader.line_num
    except csv.Error:
        return None
    return None


def first_undecodable(path: Path, encoding: str) -> tuple[int, int, bytes] | None:
    """(line, bad byte, the bytes of that line before it), or None if the file decodes."""
    line, line_start, offset, carry = 1, 0, 0, b""
    with Path(path).open("rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            buf = carry + chunk
            try:
                buf.decode(encoding)
                n = len(buf)
            except UnicodeDecodeError as e:
                if chunk and e.reason == "unexpected end of data":
                    n = e.start  # a character cut by the chunk boundary: carry it over
                else:
                    nl = buf.rfind(b"\n", 0, e.start)
                    start = offset + nl + 1 if nl >= 0 else line_start
                    f.seek(start)
                    prefix = f.read(offset + e.start - start)
                    return line + buf.count(b"\n", 0, e.start), buf[e.start], prefix
            line += buf.count(b"\n", 0, n)
            nl = buf.rfind(b"\n", 0, n)
            line_start = offset + nl + 1 if nl >= 0 else line_start
            carry, offset = buf[n:], offset + n
            if not chunk:
                return None


def _contains(path: Path, needle: bytes) -> bool:
    with Path(path).open("rb") as f:
        return any(needle in chunk for chunk in iter(lambda: f.read(_CHUNK), b""))
