"""The feedback log: SQLite (WAL, synchronous=FULL) and a real PostgreSQL server; kill -9 loses no acked write."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from recotorch.models import MatrixFactorization
from recotorch.serve.store import export_feedback, open_store, read_feedback, sqlite_path
from tests.helpers.server import ServerProcess, free_port
from tests.helpers.synthetic import toy_catalogue


# ---- a real PostgreSQL server, started by the test --------------------------------------------
def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return candidates[-1].parent if candidates else None


@pytest.fixture(scope="module")
def postgres_url():
    pytest.importorskip("psycopg")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    run_as: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            pytest.skip("running as root without a 'postgres' user to start the server as")
        run_as = ["runuser", "-u", "postgres", "--"]
    home = Path(tempfile.mkdtemp(prefix="recotorch-pg-"))  # outside pytest's 0700 tree: postgres must reach it
    home.chmod(0o755)
    data = home / "data"
    data.mkdir()
    if run_as:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    log = home / "pg.log"
    log.touch()
    if run_as:
        shutil.chown(log, "postgres", "postgres")
    subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
                    f"-p {port} -c listen_addresses=127.0.0.1 -k {data}", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.db'}"
    url = request.getfixturevalue("postgres_url")
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:  # a fresh table for each test
        conn.execute("DROP TABLE IF EXISTS feedback")
    return url


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "mf"
    MatrixFactorization(dim=4, epochs=2).fit(toy_catalogue(30, 40, 8)).save(path)
    return path


# ---- the store itself ------------------------------------------------------------------------
def test_round_trip_and_export(store_url, tmp_path):
    store = open_store(store_url)
    try:
        ids = [store.add("196", "242", 4.0, 881250949.0), store.add("u-x", "302", 3.5, 881250950.7)]
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
