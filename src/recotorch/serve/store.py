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
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from recotorch.errors import OptionError, ServiceUnavailableError

COLUMNS = ("user", "item", "rating", "timestamp")
DEFAULT_TIMEOUT_S = 5.0
_SQLITE_SCHEMA = """CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, item_id TEXT NOT NULL,
    value REAL NOT NULL, ts REAL NOT NULL, received REAL NOT NULL, event_key TEXT)"""
_PG_SCHEMA = """CREATE TABLE IF NOT EXISTS feedback (
    id BIGSERIAL PRIMARY KEY, user_id TEXT NOT NULL, item_id TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL, ts DOUBLE PRECISION NOT NULL, received DOUBLE PRECISION NOT NULL,
    event_key TEXT)"""
# NULL keys never collide (SQL), so events without a key are all kept
_KEY_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS feedback_event_key ON feedback (event_key)"
_SERVER_KEY = "srv-"  # keys the PostgreSQL store makes itself, so that its own retries stay idempotent


@dataclass(frozen=True)
class Added:
    """What `add` stored (or had stored before, for a repeated key): `created` is False for a repeat."""

    id: int
    created: bool
    user: str
    item: str
    value: float
    ts: float
    key: str | None


class FeedbackStore(Protocol):
    """Where feedback events go; `add` returns only once the event is durable.

    `key` is the client's idempotency key: an event with a key already stored is not stored
    again, and `add` returns the stored one (`created=False`). Errors: `OptionError` for a bad
    id or a key reused for a different event, `ServiceUnavailableError` when the database is
    down, locked or slow past the store's timeout.
    """

    url: str

    def add(self, user: str, item: str, value: float, ts: float, key: str | None = None,
            client_time: bool = True) -> Added: ...

    def count(self) -> int: ...

    def read(self) -> pl.DataFrame: ...

    def close(self) -> None: ...


def check_text(name: str, text: str) -> None:
    """OptionError for text no store can hold faithfully: NUL (PostgreSQL refuses it), lone surrogates."""
    if "\x00" in text:
        raise OptionError(name, "must not contain a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise OptionError(name, "must be valid Unicode (no lone surrogates)") from None


def _check_event(user: str, item: str, key: str | None) -> None:
    check_text("user", user)
    check_text("item", item)
    if key is not None:
        check_text("event key", key)


def _same_event(row: tuple[Any, ...], user: str, item: str, value: float, ts: float | None) -> bool:
    """Does a stored (id, user, item, value, ts) row describe this event? `ts` None: the client gave no time."""
    return row[1] == user and row[2] == item and float(row[3]) == float(value) and (ts is None or
                                                                                  float(row[4]) == float(ts))


def _repeat(row: tuple[Any, ...], user: str, item: str, value: float, ts: float | None, key: str) -> Added:
    if not _same_event(row, user, item, value, ts):
        raise OptionError("Idempotency-Key", f"{key[:64]!r} was already used for a different event")
    return Added(int(row[0]), False, str(row[1]), str(row[2]), float(row[3]), float(row[4]), key)


class SQLiteStore:
    """One connection guarded by a lock (SQLite serialises writers anyway); WAL + synchronous=FULL.

    A write waits at most `timeout` seconds for the lock (ours, then SQLite's busy timeout), then
    raises ServiceUnavailableError: another process holding the database never hangs a request.
    """

    def __init__(self, path: str | Path, url: str | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.url = url or f"sqlite:///{self.path}"
        self.timeout = timeout
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=timeout)
            self._prepare()
        except (OSError, sqlite3.Error) as exc:
            raise OptionError("--store", f"{self.path}: cannot use it as a SQLite feedback log ({exc})") from exc

    def _prepare(self) -> None:
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch SQLite to WAL mode (got {mode})")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
        self._conn.execute(_SQLITE_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(feedback)")}
        if "event_key" not in columns:  # a log written before idempotency keys existed
            self._conn.execute("ALTER TABLE feedback ADD COLUMN event_key TEXT")
        self._conn.execute(_KEY_INDEX)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if not self._lock.acquire(timeout=self.timeout):
            raise ServiceUnavailableError(f"the feedback store is busy (waited {self.timeout:g}s); retry later")
        try:
            yield
        finally:
            self._lock.release()

    def add(self, user: str, item: str, value: float, ts: float, key: str | None = None,
            client_time: bool = True) -> Added:
        """Store one event (or find it again by `key`); `client_time=False`: `ts` is the server's clock."""
        _check_event(user, item, key)
        with self._locked():
            try:
                self._conn.execute("BEGIN IMMEDIATE")  # the write lock now: check-then-insert is atomic
            except sqlite3.OperationalError as exc:  # locked past busy_timeout by another connection
                raise ServiceUnavailableError(f"the feedback database is locked ({exc}); retry later") from exc
            try:
                if key is not None:
                    row = self._conn.execute("SELECT id, user_id, item_id, value, ts FROM feedback "
                                             "WHERE event_key = ?", (key,)).fetchone()
                    if row is not None:
                        self._conn.execute("COMMIT")
                        return _repeat(row, user, item, value, ts if client_time else None, key)
                cur = self._conn.execute(
                    "INSERT INTO feedback (user_id, item_id, value, ts, received, event_key) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (user, item, float(value), float(ts), time.time(), key))
                self._conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._rollback()
                raise ServiceUnavailableError(f"the feedback database is unavailable ({exc}); retry later") from exc
            except BaseException:
                self._rollback()
                raise
            return Added(int(cur.lastrowid or 0), True, user, item, float(value), float(ts), key)

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def count(self) -> int:
        with self._locked():
            return int(self._conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def read(self) -> pl.DataFrame:
        with self._locked():
            rows = self._conn.execute("SELECT user_id, item_id, value, ts FROM feedback ORDER BY id").fetchall()
        return _frame(rows)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresStore:
    """PostgreSQL through psycopg 3 (optional dependency): one connection, a lock, a commit per event.

    A lost connection (the database restarted, a network blip) is reopened on the next use:
    each call makes up to `retries` attempts within `timeout` seconds, then raises
    ServiceUnavailableError (503) while the database stays down. Every insert carries a key (the
    client's, or one made here), so an attempt repeated after a commit whose answer was lost
    finds the stored row instead of storing the event twice.
    """

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT_S, retries: int = 3) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise RuntimeError("a postgresql:// feedback store needs psycopg: pip install 'psycopg[binary]'") from exc
        self._psycopg = psycopg
        self.url = url
        self.timeout = timeout
        self.retries = max(1, retries)
        self._lock = threading.Lock()
        self._conn: Any = None
        try:  # fail at start, with the driver's one-line reason, when the URL or the database is wrong
            self._conn = self._open()
            with self._conn.cursor() as cur:
                for statement in (_PG_SCHEMA, "ALTER TABLE feedback ADD COLUMN IF NOT EXISTS event_key TEXT",
                                  _KEY_INDEX):
                    cur.execute(statement)
            self._conn.commit()
        except psycopg.Error as exc:
            self._drop()
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ServiceUnavailableError(f"--store: cannot use the PostgreSQL feedback database: {reason}") from exc

    def _open(self) -> Any:
        conn = self._psycopg.connect(self.url, autocommit=False, connect_timeout=max(1, round(self.timeout)))
        conn.execute(f"SET statement_timeout = {int(self.timeout * 1000)}")
        conn.commit()
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            with suppress(Exception):  # already broken; nothing to release
                self._conn.close()
        self._conn = None

    def _run(self, work: Any) -> Any:
        """`work(conn)` in one transaction, reconnecting and retrying on connection errors (bounded)."""
        psycopg = self._psycopg
        deadline = time.monotonic() + self.timeout
        if not self._lock.acquire(timeout=self.timeout):
            raise ServiceUnavailableError(f"the feedback store is busy (waited {self.timeout:g}s); retry later")
        try:
            delay = 0.05
            for attempt in range(self.retries):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = self._open()
                    try:
                        result = work(self._conn)
                        self._conn.commit()
                        return result
                    except BaseException:
                        if self._conn is not None and not self._conn.closed:
                            self._conn.rollback()
                        raise
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    self._drop()
                    if attempt + 1 == self.retries or time.monotonic() + delay >= deadline:
                        raise ServiceUnavailableError(
                            f"the feedback database is unavailable ({type(exc).__name__}); retry later") from exc
                    time.sleep(delay)
                    delay *= 3
            raise AssertionError("unreachable")
        finally:
            self._lock.release()

    def add(self, user: str, item: str, value: float, ts: float, key: str | None = None,
            client_time: bool = True) -> Added:
        _check_event(user, item, key)
        stored_key = key if key is not None else f"{_SERVER_KEY}{uuid.uuid4().hex}"

        def insert(conn: Any) -> Added:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO feedback (user_id, item_id, value, ts, received, event_key) "
                            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (event_key) DO NOTHING RETURNING id",
                            (user, item, float(value), float(ts), time.time(), stored_key))
                row = cur.fetchone()
                if row is not None:
                    return Added(int(row[0]), True, user, item, float(value), float(ts), key)
                cur.execute("SELECT id, user_id, item_id, value, ts FROM feedback WHERE event_key = %s",
                            (stored_key,))
                found = cur.fetchone()
            assert found is not None  # the conflict means the row exists
            if key is None:  # our own key: an earlier attempt of this very call committed it
                return Added(int(found[0]), True, user, item, float(value), float(ts), None)
            return _repeat(found, user, item, value, ts if client_time else None, key)

        return self._run(insert)

    def count(self) -> int:
        def work(conn: Any) -> int:
            with conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM feedback")
                row = cur.fetchone()
            return int(row[0]) if row else 0

        return self._run(work)

    def read(self) -> pl.DataFrame:
        def work(conn: Any) -> list[Any]:
            with conn.cursor() as cur:
                cur.execute("SELECT user_id, item_id, value, ts FROM feedback ORDER BY id")
                return cur.fetchall()

        return _frame(self._run(work))

    def close(self) -> None:
        with self._lock:
            self._drop()


def sqlite_path(url: str) -> Path:
    """Path of a `sqlite:///relative.db` / `sqlite:////abs/path.db` URL (SQLAlchemy's convention)."""
    if not url.startswith("sqlite:///"):
        raise OptionError("--store", f"not a SQLite URL: {url!r} (expected sqlite:///path/feedback.db)")
    path = url[len("sqlite:///"):]
    if not path or path == ":memory:":
        raise OptionError("--store", "the feedback store must be a file (sqlite:///path/feedback.db), not in memory")
    return Path(path)


def open_store(url: str | Path, timeout: float = DEFAULT_TIMEOUT_S) -> FeedbackStore:
    """A store from a URL: sqlite:///path.db, postgresql://user@host/db, or a plain file path (SQLite).

    `timeout`: the most seconds one write waits for a lock or a database before it fails with 503.
    """
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresStore(text, timeout=timeout)
    if text.startswith("sqlite:"):
        return SQLiteStore(sqlite_path(text), url=text, timeout=timeout)
    if "://" in text:
        raise OptionError("--store", f"unsupported feedback store URL {text!r}: use sqlite:///path.db or "
                          "postgresql://...")
    return SQLiteStore(Path(text), timeout=timeout)


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
