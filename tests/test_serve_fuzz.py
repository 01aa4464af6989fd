"""Malformed, hostile and random requests never give a 500, and never touch a file they name."""

from __future__ import annotations

import json
import random
import warnings

import pytest
import torch

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from recotorch.models import MatrixFactorization
from recotorch.serve.app import create_app
from tests.helpers.synthetic import synthetic_mf, toy_catalogue

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HOSTILE_IDS = [
    "", " ", "0", "-1", "1.5", "1e3", "+1", " 1 ", "0x10", "1_000", "9" * 40, "-" + "9" * 30, "NaN", "inf", "null",
    "true", "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f", "....//....//etc/passwd", "/etc/passwd",
    "C:\\Windows\\win.ini", "file:///etc/passwd", "~root", "\x00", "%00", "a\x00b", "\n", "\r\n", "é", "💥",
    "' OR 1=1 --", "<script>alert(1)</script>", "${jndi:ldap://x}", "{{7*7}}", "a" * 300, "a" * 5000, "sku-0000001",
]
HOSTILE_VALUES = [None, True, False, 0, -1, 1.5, 10**30, -(10**30), 1e308, "", "x" * 10_000, [], {}, [1, 2],
                  {"a": 1}, "NaN", "Infinity", [[[]]], "../../etc/passwd"]
GET_ROUTES = ["/users/{id}/recommendations", "/items/{id}/similar", "/items/{id}"]
QUERY_KEYS = ["k", "exclude_seen", "include", "exclude", "genre", "q", "limit", "offset"]
POST_ROUTES = ["/recommendations", "/predict", "/feedback", "/admin/reload"]


@pytest.fixture(scope="module", params=["int-ids", "str-ids"])
def client(request, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("fuzz")
    if request.param == "int-ids":
        MatrixFactorization(dim=4, epochs=2).fit(toy_catalogue(30, 40, 8)).save(root / "m")
    else:
        synthetic_mf(30, 200, 4, seen_per_user=5).save(root / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app = create_app(root / "m", store_url=f"sqlite:///{root / 'fb.db'}", models_root=root, admin_token="t")
    with TestClient(app, raise_server_exceptions=False, headers={"Authorization": "Bearer t"}) as c:
        yield c
    torch.set_num_threads(threads)


def assert_not_500(response, what: str) -> None:
    assert response.status_code < 500 or response.status_code in (501, 503), f"{what} -> {response.status_code}: " \
        f"{response.text[:300]}"


def test_hostile_path_ids(client):
    for route in GET_ROUTES:
        for raw in HOSTILE_IDS:
            if raw.isprintable():  # the client refuses control characters; the quoted form below sends them
                path = route.replace("{id}", raw)
                assert_not_500(client.get(path), path)
            quoted = route.replace("{id}", "".join(f"%{b:02X}" for b in raw.encode()))
            assert_not_500(client.get(quoted), quoted)


def test_hostile_query_values(client):
    for key in QUERY_KEYS:
        for raw in [*HOSTILE_IDS, "1,2,3", ",,,", "1," * 3000, "0", "-5", "1001", "99999999999999999999"]:
            for path in ("/users/1/recommendations", "/items", "/items/sku-0000001/similar", "/items/1/similar"):
                got = client.get(path, params={key: raw})
                assert_not_500(got, f"{path}?{key}={raw[:40]!r}")


def test_hostile_bodies(client):
    bodies = [
        {"ratings": [{"item": v, "rating": 4}]} for v in HOSTILE_VALUES
    ] + [{"ratings": [{"item": 1, "rating": v}]} for v in HOSTILE_VALUES] + [
        {"liked": v} for v in HOSTILE_VALUES] + [
        {"liked": [1], "k": v} for v in HOSTILE_VALUES] + [
        {"liked": [1], "include": v} for v in HOSTILE_VALUES] + [
        {"liked": [1], "genre": v} for v in HOSTILE_VALUES] + [
        {"pairs": [{"user": v, "item": 1}]} for v in HOSTILE_VALUES] + [
        {"pairs": v} for v in HOSTILE_VALUES] + [
        {"user": v, "item": 1, "value": 1} for v in HOSTILE_VALUES] + [
        {"user": 1, "item": 1, "value": v} for v in HOSTILE_VALUES] + [
        {"user": 1, "item": 1, "value": 1, "time": v} for v in [*HOSTILE_VALUES, "2024-13-45", "yesterday"]] + [
        {"model": v} for v in HOSTILE_VALUES + HOSTILE_IDS + [".", "..", "m/..", "m/../m"]]
    for route in POST_ROUTES:
        for body in bodies:
            got = client.post(route, content=json.dumps(body), headers={"Content-Type": "application/json"})
            assert_not_500(got, f"{route} {json.dumps(body)[:80]}")
        for raw in (b"", b"{", b"[]", b"null", b"\xff\xfe", b'{"a":' * 500, b"1" * 100_000, b'"string"'):
            got = client.post(route, content=raw, headers={"Content-Type": "application/json"})
            assert_not_500(got, f"{route} raw {raw[:20]!r}")
        assert_not_500(client.post(route, content=b"k=1", headers={"Content-Type": "text/plain"}), f"{route} text")


def test_random_requests(client):
    rng = random.Random(1234)
    alphabet = "ab1-_./%\\\x00 é💥,:;'\"<>{}[]?&=#"

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))

    def value(depth: int = 0) -> object:
        makers = [lambda: None, lambda: rng.randint(-10**12, 10**12), lambda: rng.uniform(-1e9, 1e9), text,
                  lambda: rng.random() < 0.5, lambda: [value(depth + 1) for _ in range(rng.randint(0, 3))],
                  lambda: {text(): value(depth + 1) for _ in range(rng.randint(0, 3))},
                  lambda: {"item": value(depth + 1), "rating": value(depth + 1)}]
        return makers[rng.randint(0, 7 if depth < 2 else 4)]()

    for _ in range(400):
        if rng.random() < 0.5:
            path = rng.choice(GET_ROUTES).replace("{id}", "".join(f"%{b:02X}" for b in (text() or "x").encode()))
            params = {rng.choice(QUERY_KEYS): text() for _ in range(rng.randint(0, 3))}
            assert_not_500(client.get(path, params=params), f"GET {path!r} {params!r}")
        else:
            route = rng.choice(POST_ROUTES)
            body = {key: value() for key in rng.sample(["ratings", "liked", "k", "pairs", "user", "item", "value",
                                                        "time", "model", "genre", "include"], rng.randint(1, 4))}
            got = client.post(route, content=json.dumps(body), headers={"Content-Type": "application/json"})
            assert_not_500(got, f"POST {route} {body!r}"[:200])


def test_reload_names_never_leave_the_root(client, tmp_path):
    root = client.app.state.server.models_root
    outside = tmp_path / "outside"
    MatrixFactorization(dim=4, epochs=1).fit(toy_catalogue(10, 12, 4)).save(outside)
    (root / "link").symlink_to(outside, target_is_directory=True)
    before = client.app.state.server.recommender
    for name in ("link", "..", "../outside", "outside", "m/../../outside", "%2e%2e", "m\x00"):
        got = client.post("/admin/reload", json={"model": name})
        assert got.status_code in (404, 422), (name, got.status_code)
    assert client.app.state.server.recommender is before
