"""Oversized request bodies against the real uvicorn server: 413 at once, and other routes keep answering."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

pytest.importorskip("fastapi")

from recotorch.models import MatrixFactorization
from tests.helpers.server import ServerProcess
from tests.helpers.synthetic import toy_catalogue

TEN_MB = 10 * 1024 * 1024
HANG_GUARD_S = 120  # generous: the answer needs a few milliseconds


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    MatrixFactorization(dim=4, epochs=2).fit(toy_catalogue(30, 40, 8)).save(root / "m")
    with ServerProcess(root / "m", "--store", f"sqlite:///{root / 'fb.db'}") as server:
        yield server


def test_eight_concurrent_10mb_posts_get_413_while_health_answers(server):
    body = b'{"user": 1, "item": 2, "value": 1, "pad": "' + b"x" * TEN_MB + b'"}'
    statuses: list[int | str] = []
    lock = threading.Lock()
    started = threading.Barrier(9)

    def post(route: str) -> None:
        started.wait()
        try:
            with httpx.Client(timeout=HANG_GUARD_S) as http:
                got = http.post(server.url + route, content=body, headers={"Content-Type": "application/json"})
            result: int | str = got.status_code
        except httpx.HTTPError as exc:  # the server must answer, not drop the connection
            result = f"{type(exc).__name__}: {exc}"
        with lock:
            statuses.append(result)

    threads = [threading.Thread(target=post, args=(route,)) for route in ["/feedback", "/predict"] * 4]
    for t in threads:
        t.start()
    started.wait()
    health: list[int] = []
    with httpx.Client(timeout=HANG_GUARD_S) as http:
        while any(t.is_alive() for t in threads) or len(health) < 3:  # /health while the uploads are in flight
            health.append(http.get(server.url + "/health").status_code)
            rec = http.get(server.url + "/users/1/recommendations?k=3")
            health.append(rec.status_code)
    for t in threads:
        t.join(HANG_GUARD_S)
    assert statuses == [413] * 8, statuses
    assert set(health) == {200}, health
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_a_streamed_body_without_length_is_cut_at_the_limit(server):
    def chunks():
        for _ in range(40):
            yield b"x" * 100_000  # 4 MB in chunks, no Content-Length

    got = httpx.post(server.url + "/feedback", content=chunks(), headers={"Content-Type": "application/json"},
                     timeout=HANG_GUARD_S)
    assert got.status_code == 413, got.text
    ok = httpx.post(server.url + "/feedback", json={"user": 1, "item": 2, "value": 3}, timeout=HANG_GUARD_S)
    assert ok.status_code == 201


def test_a_lying_content_length_is_refused_before_the_body(server):
    """A declared 10 MB is answered without waiting for a byte of it."""
    host, port = "127.0.0.1", server.port
    with socket.create_connection((host, port), timeout=HANG_GUARD_S) as s:
        s.sendall(b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % TEN_MB)
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_small_bodies_pass(server):
    got = httpx.post(server.url + "/predict", json={"pairs": [{"user": 1, "item": 2}]}, timeout=HANG_GUARD_S)
    assert got.status_code == 200, got.text
