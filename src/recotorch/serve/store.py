"""The feedback log: SQLite (WAL, synchronous=FULL) by default, PostgreSQL by URL when outgrown.

A write is acknowledged only after its transaction committed: with SQLite in WAL mode and
`synchronous=FULL` the WAL is fsynced at every commit, so an acknowledged event survives a
killed process and a power cut. Ids are stored as text (the log also accepts users and items the
model has not seen yet); `read_feedback` turns all-integer id columns back into integers.

>>> store = open_store("sqlite:///feedback.db")
>>> store.add("196", "242", 4.0, 881250949.0)
>>> read_feedback("sqlite:///feedback.db")  # user, item, rating, timestamp
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import polars as pl

COLUMNS = ("user", "item", "rating", "timestamp")
_SQLITE_SCHEMA = """CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, item_id TEXT NOT NULL,
    value REAL NOT NULL, ts REAL NOT NULL, received REAL NOT NULL)"""
_PG_SCHEMA = """CREATE TABLE IF NOT EXISTS feedback (
    id BIGSERIAL PRIMARY KEY, user_id TEXT NOT NULL, item_id TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL, ts DOUBLE PRECISION NOT NULL, received DOUBLE PRECISION NOT NULL)"""


class FeedbackStore(Protocol):
    """Where feedback events go; `add` returns only once the event is durable."""

    url: str

    def add(self, user: str, item: str, value: float, ts: float) -> int: ...

    def count(self) -> int: ...

    def read(self) -> pl.DataFrame: ...

    def close(self) -> None: ...


class SQLiteStore:
    """One connection guarded by a lock (SQLite serialises writers anyway); WAL + synchronous=FULL."""

    def __init__(self, path: str | Path, url: str | None = None) -> None:
        self.path = Path(path)
        self.url = url or f"sqlite:///{self.path}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"{self.path}: could not switch SQLite to WAL mode (got {mode})")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.execute(_SQLITE_SCHEMA)

    def add(self, user: str, item: str, value: float, ts: float) -> int:
        with self._lock:
            cur = self._conn.execute("BEGIN IMMEDIATE")
            try:
                cur = self._conn.execute(
                    "INSERT INTO feedback (user_id, item_id, value, ts, received) VALUES (?, ?, ?, ?, ?)",
                    (user, item, float(value), float(ts), time.time()))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return int(cur.lastrowid or 0)

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def read(self) -> pl.DataFrame:
        with self._lock:
            rows = self._conn.execute("SELECT user_id, item_id, value, ts FROM feedback ORDER BY id").fetchall()
        return _frame(rows)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresStore:
    """PostgreSQL through psycopg 3 (optional dependency): one connection, a lock, a commit per event."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise RuntimeError("a postgresql:// feedback store needs psycopg: pip install 'psycopg[binary]'") from exc
        self.url = url
        self._lock = threading.Lock()
        self._conn = psycopg.connect(url, autocommit=False)
        with self._conn.cursor() as cur:
            cur.execute(_PG_SCHEMA)
        self._conn.commit()

    def add(self, user: str, item: str, value: float, ts: float) -> int:
        with self._lock:
            try:
                with self._conn.cursor() as cur:
                    cur.execute("INSERT INTO feedback (user_id, item_id, value, ts, received) "
                                "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                                (user, item, float(value), float(ts), time.time()))
                    row = cur.fetchone()
                self._conn.commit()
            except BaseException:
                self._conn.rollback()
                raise
            return int(row[0]) if row else 0

    def count(self) -> int:
        with self._lock, self._conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM feedback")
            row = cur.fetchone()
            self._conn.commit()
            return int(row[0]) if row else 0

    def read(self) -> pl.DataFrame:
        with self._lock, self._conn.cursor() as cur:
            cur.execute("SELECT user_id, item_id, value, ts FROM feedback ORDER BY id")
            rows = cur.fetchall()
            self._conn.commit()
        return _frame(rows)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def sqlite_path(url: str) -> Path:
    """Path of a `sqlite:///relative.db` / `sqlite:////abs/path.db` URL (SQLAlchemy's convention)."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a SQLite URL: {url!r} (expected sqlite:///path/feedback.db)")
    path = url[len("sqlite:///"):]
    if not path or path == ":memory:":
        raise ValueError("the feedback store must be a file (sqlite:///path/feedback.db), not in memory")
    return Path(path)


def open_store(url: str | Path) -> FeedbackStore:
    """A store from a URL: sqlite:///path.db, postgresql://user@host/db, or a plain file path (SQLite)."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresStore(text)
    if text.startswith("sqlite:"):
        return SQLiteStore(sqlite_path(text), url=text)
    if "://" in text:
        raise ValueError(f"unsupported feedback store URL {text!r}: use sqlite:///path.db or postgresql://...")
    return SQLiteStore(Path(text))


def _frame(rows: list[Any]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema={"user": pl.Utf8, "item": pl.Utf8, "rating": pl.Float64,
                                       "timestamp": pl.Float64}, orient="row")
    for col in ("user", "item"):  # "196" -> 196 when every id of the column is an integer
        as_int = frame[col].cast(pl.Int64, strict=False)
        if as_int.null_count() == 0 and frame.height and (as_int.cast(pl.Utf8) == frame[col]).all():
            frame = frame.with_columns(as_int.alias(col))
    return frame.with_columns(pl.col("timestamp").floor().cast(pl.Int64))


def read_feedback(store_url: str | Path) -> pl.DataFrame:
    """Every feedback event as a frame: user, item, rating (float), timestamp (whole seconds), in arrival order.

    Repeated (user, item) events are all kept; `read_interactions` on the exported CSV keeps the
    latest of each.
    """
    store = open_store(store_url)
    try:
        return store.read()
    finally:
        store.close()


def export_feedback(store_url: str | Path, out_csv: str | Path) -> int:
    """Write the feedback log to a CSV (user,item,rating,timestamp) atomically; returns the row count."""
    frame = read_feedback(store_url)
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_csv.name}.", dir=out_csv.parent)
    os.close(fd)
    try:
        frame.write_csv(tmp)
        os.replace(tmp, out_csv)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return frame.height
