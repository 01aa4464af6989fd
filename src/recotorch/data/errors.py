"""Errors raised while reading data: each says which file, line and column is at fault."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
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


class ChecksumError(DataError):
    """A downloaded or local archive does not have the expected checksum."""


class DownloadError(DataError):
    """The publisher (or package index) could not be reached or refused the request."""


def _rebuild(cls: type[DataError], path, message, line, column, row) -> DataError:
    return cls(path, message, line=line, column=column, row=row)
