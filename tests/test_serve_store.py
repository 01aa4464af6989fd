"""The feedback log: SQLite (WAL, synchronous=FULL) and a real PostgreSQL server; kill -9 loses no acked write."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from recotorch.errors import OptionError
from recotorch.models import MatrixFactorization
from recotorch.serve.store import export_feedback, open_store, read_feedback, sqlite_path
from tests.helpers.postgres import PostgresCluster
from tests.helpers.server import ServerProcess
from tests.helpers.synthetic import toy_catalogue


# ---- a real PostgreSQL server, started by the test --------------------------------------------
@pytest.fixture(scope="module")
def postgres_url():
    cluster = PostgresCluster().start()
    try:
        yield cluster.url
    finally:
        cluster.destroy()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.db'}"
    url = request.getfixturevalue("postgres_url")
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:  # a fresh table for each test
        conn.execute("DROP TABLE IF EXISTS feedback")
    return url


HANG_GUARD_S = 120


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "mf"
    MatrixFactorization(dim=4, epochs=2).fit(toy_catalogue(30, 40, 8)).save(path)
    return path


# ---- the store itself ------------------------------------------------------------------------
def test_round_trip_and_export(store_url, tmp_path):
    store = open_store(store_url)
    try:
        ids = [store.add("196", "242", 4.0, 881250949.0).id, store.add("u-x", "302", 3.5, 881250950.7).id]
        assert ids[1] > ids[0] and store.count() == 2
    finally:
        store.close()
    frame = read_feedback(store_url)
    assert frame.columns == ["user", "item", "rating", "timestamp"]
    assert frame["user"].to_list() == ["196", "u-x"] and frame["item"].to_list() == [242, 302]
    assert frame["timestamp"].to_list() == [881250949, 881250950]
    assert export_feedback(store_url, tmp_path / "out" / "feedback.csv") == 2
    back = pl.read_csv(tmp_path / "out" / "feedback.csv")
    assert back["rating"].to_list() == [4.0, 3.5]


def test_feedback_trains_a_model(store_url):
    from recotorch.data.interactions import Interactions

    store = open_store(store_url)
    try:
        for u in range(1, 6):
            for i in range(1, 5):
                store.add(str(u), str(i), float((u + i) % 5 + 1), 1_000_000.0 + u * 10 + i)
    finally:
        store.close()
    frame = read_feedback(store_url)
    model = MatrixFactorization(dim=2, epochs=2).fit(Interactions.from_frame(frame))
    assert model.n_users == 5 and model.n_items == 4 and model.users_.is_integer


def test_sqlite_settings(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'f.db'}")
    try:
        conn = store._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        store.close()
    assert sqlite_path("sqlite:////abs/f.db") == Path("/abs/f.db")
    assert sqlite_path("sqlite:///rel/f.db") == Path("rel/f.db")
    for bad in ("sqlite:///:memory:", "mysql://x/y"):
        with pytest.raises(ValueError):
            open_store(bad)


def test_concurrent_writers(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'f.db'}")
    try:
        def write(t: int) -> None:
            for n in range(50):
                store.add(f"t{t}", str(n), 1.0, 1.0)

        threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.count() == 200
    finally:
        store.close()


def test_an_event_key_stores_an_event_once(store_url):
    store = open_store(store_url)
    try:
        first = store.add("u1", "i1", 4.0, 1_700_000_000.0, key="evt-1")
        again = store.add("u1", "i1", 4.0, 1_700_000_000.0, key="evt-1")
        assert first.created and not again.created and again.id == first.id and store.count() == 1
        later = store.add("u1", "i1", 4.0, 1_700_000_999.0, key="evt-1", client_time=False)  # server clock: ignored
        assert later.id == first.id and later.ts == 1_700_000_000.0
        with pytest.raises(OptionError, match="different event"):
            store.add("u1", "i2", 4.0, 1_700_000_000.0, key="evt-1")
        store.add("u1", "i1", 4.0, 1_700_000_000.0)  # no key: every event is kept
        store.add("u1", "i1", 4.0, 1_700_000_000.0)
        assert store.count() == 3
    finally:
        store.close()


@pytest.mark.parametrize("bad", ["a\x00b", "\ud800", "x\udfff"])
def test_every_store_refuses_nul_and_lone_surrogates(store_url, bad):
    store = open_store(store_url)
    try:
        for args in ((bad, "i", 1.0, 1.0, None), ("u", bad, 1.0, 1.0, None), ("u", "i", 1.0, 1.0, bad)):
            with pytest.raises(OptionError):
                store.add(*args)
        assert store.count() == 0
    finally:
        store.close()


def test_a_log_from_before_event_keys_is_upgraded(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, "
                     "item_id TEXT NOT NULL, value REAL NOT NULL, ts REAL NOT NULL, received REAL NOT NULL)")
        conn.execute("INSERT INTO feedback (user_id, item_id, value, ts, received) VALUES ('1', '2', 3, 4, 5)")
    store = open_store(f"sqlite:///{path}")
    try:
        store.add("1", "3", 1.0, 5.0, key="k")
        assert not store.add("1", "3", 1.0, 5.0, key="k").created and store.count() == 2
    finally:
        store.close()


# ---- a locked database stalls only the feedback route -------------------------------------------
def test_a_held_sqlite_write_lock_gives_503_and_blocks_nothing_else(model_dir, tmp_path):
    import httpx

    db = tmp_path / "feedback.db"
    with ServerProcess(model_dir, "--store", f"sqlite:///{db}", "--store-timeout", "1") as server:
        assert httpx.post(server.url + "/feedback", json={"user": 1, "item": 2, "value": 3}).status_code == 201
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        holder.execute("INSERT INTO feedback (user_id, item_id, value, ts, received) VALUES ('x', 'y', 1, 1, 1)")
        statuses: list[int] = []
        lock = threading.Lock()

        def post(n: int) -> None:
            with httpx.Client(base_url=server.url, timeout=HANG_GUARD_S) as http:
                got = http.post("/feedback", json={"user": f"w{n}", "item": 1, "value": 1})
            with lock:
                statuses.append(got.status_code)

        try:
            writers = [threading.Thread(target=post, args=(n,)) for n in range(48)]  # more than a thread pool
            for t in writers:
                t.start()
            other: list[int] = []
            with httpx.Client(base_url=server.url, timeout=HANG_GUARD_S) as http:
                while any(t.is_alive() for t in writers) or len(other) < 4:
                    other += [http.get("/health").status_code,
                              http.get("/users/1/recommendations?k=3").status_code,
                              http.get("/info").status_code,  # a sync route: it needs a pool thread
                              http.post("/predict", json={"pairs": [{"user": 1, "item": 2}]}).status_code]
            for t in writers:
                t.join(HANG_GUARD_S)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert set(other) == {200}, other
        assert statuses and set(statuses) == {503}, statuses
        after = httpx.post(server.url + "/feedback", json={"user": 1, "item": 2, "value": 3}, timeout=HANG_GUARD_S)
        assert after.status_code == 201, after.text
    assert read_feedback(f"sqlite:///{db}").height == 2  # the refused writes were never stored


# ---- a PostgreSQL restart under a running server -----------------------------------------------
@pytest.mark.slow
def test_postgres_restart_503_while_down_then_201_and_nothing_lost_or_doubled(model_dir):
    import httpx

    cluster = PostgresCluster().start()
    acked: list[tuple[str, str]] = []
    seen: list[tuple[float, int]] = []  # (time, status) of every answer
    lock = threading.Lock()
    stop = threading.Event()
    try:
        with ServerProcess(model_dir, "--store", cluster.url, "--store-timeout", "2") as server:

            def client(c: int) -> None:
                with httpx.Client(base_url=server.url, timeout=HANG_GUARD_S) as http:
                    n = 0
                    while not stop.is_set():
                        event = {"user": f"c{c}", "item": f"i{n}", "value": 1.0}
                        got = http.post("/feedback", json=event)
                        with lock:
                            seen.append((time.monotonic(), got.status_code))
                            if got.status_code == 201:
                                acked.append((event["user"], event["item"]))
                        n += 1
                        time.sleep(0.01)

            threads = [threading.Thread(target=client, args=(c,)) for c in range(3)]
            for t in threads:
                t.start()
            _wait_for(lambda: len(acked) >= 30, "acknowledged events before the restart")
            cluster.stop("fast")
            down_at = time.monotonic()
            _wait_for(lambda: sum(1 for when, st in seen if when > down_at and st == 503) >= 5, "503s while down")
            cluster.start()
            up_at = time.monotonic()
            _wait_for(lambda: any(when > up_at and st == 201 for when, st in list(seen)), "a 201 after the restart")
            count_after = len(acked)
            _wait_for(lambda: len(acked) >= count_after + 20, "more acknowledged events")
            stop.set()
            for t in threads:
                t.join(HANG_GUARD_S)
            output = server.output()
        statuses = {st for _, st in seen}
        assert statuses <= {201, 503}, (statuses, output[-2000:])  # never a 500
        down = [st for when, st in seen if down_at < when < up_at]
        assert down and set(down) <= {503, 201}, down  # 201s only from requests that were committed before
        stored = read_feedback(cluster.url).select(pl.col("user").cast(pl.Utf8), pl.col("item").cast(pl.Utf8))
        counts = stored.group_by(["user", "item"]).len()
        doubled = counts.filter(pl.col("len") > 1)
        assert doubled.height == 0, doubled.head()
        stored_set = set(stored.iter_rows())
        missing = [a for a in acked if a not in stored_set]
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:3]}"
    finally:
        stop.set()
        cluster.destroy()


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"hang guard: no {what} within {HANG_GUARD_S}s")
        time.sleep(0.05)


# ---- kill -9 while clients post ----------------------------------------------------------------
def test_kill_9_loses_no_acknowledged_write(store_url, model_dir):
    import httpx

    acked: list[tuple[str, str, float, float]] = []
    lock = threading.Lock()
    stop = threading.Event()
    server = ServerProcess(model_dir, "--store", store_url).start()

    def client(c: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            n = 0
            while not stop.is_set():
                event = {"user": f"c{c}", "item": f"i{n}", "value": float(n % 5), "time": 1_700_000_000 + n}
                try:
                    response = http.post("/feedback", json=event)
                except httpx.HTTPError:
                    return  # the server is gone; this write was never acknowledged
                if response.status_code == 201:
                    with lock:
                        acked.append((event["user"], event["item"], event["value"], event["time"]))
                n += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill()  # SIGKILL mid-stream: clients are still posting
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 300, server.output()[-2000:]
    with ServerProcess(model_dir, "--store", store_url) as again:  # restart on the same store
        assert httpx.post(again.url + "/feedback", json={"user": "after", "item": "x", "value": 1}).status_code == 201
    stored = set(read_feedback(store_url).select(
        pl.col("user").cast(pl.Utf8), pl.col("item").cast(pl.Utf8), "rating").iter_rows())
    missing = [a for a in acked if (a[0], a[1], a[2]) not in stored]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
