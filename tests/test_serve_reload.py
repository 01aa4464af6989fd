"""Model reload over real HTTP: POST /admin/reload and SIGHUP swap atomically; requests never see a mix."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest
import torch

pytest.importorskip("fastapi")

from recotorch.models import MatrixFactorization
from recotorch.serve.recommender import Recommender
from tests.helpers.server import ServerProcess
from tests.helpers.synthetic import toy_catalogue

USERS = list(range(1, 21))
TOKEN_ENV = {"RECOTORCH_ADMIN_TOKEN": "s3cret"}
AUTH = {"Authorization": "Bearer s3cret"}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    data = toy_catalogue()
    MatrixFactorization(dim=6, epochs=10, seed=0).fit(data).save(root / "a")
    MatrixFactorization(dim=3, epochs=3, seed=1, lr=0.05).fit(data).save(root / "b")
    (root / "broken").mkdir()
    (root / "broken" / "model.json").write_text("{not json")
    return root


def expected_lists(path) -> tuple[str, dict[int, list]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rec = Recommender.load(path)
        return rec.version, {u: [r["item"] for r in rec.recommend(u, 10)] for u in USERS}
    finally:
        torch.set_num_threads(threads)


def test_reload_is_atomic_under_load(root):
    versions = dict([expected_lists(root / "a"), expected_lists(root / "b")])
    assert len(versions) == 2 and versions[next(iter(versions))] != versions[list(versions)[1]]
    seen_versions: set[str] = set()
    problems: list[str] = []
    stop = threading.Event()
    with ServerProcess(root / "a", "--store", "none", "--models-root", str(root), env=TOKEN_ENV) as server:

        def client(c: int) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                n = 0
                while not stop.is_set():
                    user = USERS[(c * 7 + n) % len(USERS)]
                    n += 1
                    response = http.get(f"/users/{user}/recommendations?k=10")
                    if response.status_code != 200:
                        problems.append(f"HTTP {response.status_code}: {response.text[:200]}")
                        continue
                    body = response.json()
                    version = body["model"]
                    seen_versions.add(version)
                    if response.headers["X-Model-Version"] != version or version not in versions:
                        problems.append(f"unknown or inconsistent version {version}")
                    elif [r["item"] for r in body["items"]] != versions[version][user]:
                        problems.append(f"user {user}: list is not the one model {version} gives")

        threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
        for t in threads:
            t.start()
        try:
            for name in ("b", "a", "b", "a", "b"):
                time.sleep(0.3)
                got = httpx.post(server.url + "/admin/reload", json={"model": name}, headers=AUTH, timeout=60)
                assert got.status_code == 200, got.text
                assert got.json()["model"].startswith(f"{name}@")
            broken = httpx.post(server.url + "/admin/reload", json={"model": "broken"}, headers=AUTH, timeout=60)
            assert broken.status_code == 422 and "still serving b@" in broken.text
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert httpx.get(server.url + "/health").json()["model"].startswith("b@")
        metrics = httpx.get(server.url + "/metrics").text
    assert not problems, problems[:5]
    assert seen_versions == set(versions)
    assert "recotorch_model_reloads_total 5" in metrics


def test_sighup_reloads_the_directory_in_place(root, tmp_path):
    live = tmp_path / "live"
    MatrixFactorization(dim=6, epochs=10, seed=0).fit(toy_catalogue()).save(live)
    with ServerProcess(live, "--store", "none") as server:
        before = httpx.get(server.url + "/health").json()["model"]
        MatrixFactorization(dim=3, epochs=3, seed=5).fit(toy_catalogue()).save(live)  # a re-fit, written atomically
        server.signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        after = before
        while after == before and time.monotonic() < deadline:
            time.sleep(0.1)
            after = httpx.get(server.url + "/health").json()["model"]
        assert after != before, server.output()[-2000:]
        expected = expected_lists(live)
        assert after == expected[0]
        got = httpx.get(server.url + "/users/3/recommendations?k=10").json()
        assert [r["item"] for r in got["items"]] == expected[1][3]


def test_reload_needs_a_root_and_the_token(root):
    with ServerProcess(root / "a", "--store", "none", env=TOKEN_ENV) as server:
        got = httpx.post(server.url + "/admin/reload", json={"model": "b"}, headers=AUTH)
        assert got.status_code == 403 and "--models-root" in got.json()["detail"]
    with ServerProcess(root / "a", "--store", "none", "--models-root", str(root),
                       env={"RECOTORCH_ADMIN_TOKEN": ""}) as server:  # no token: admin is off, not open
        got = httpx.post(server.url + "/admin/reload", json={"model": "b"})
        assert got.status_code == 403 and "--admin-token" in got.json()["detail"]
    with ServerProcess(root / "a", "--store", "none", "--models-root", str(root), "--no-admin-auth",
                       env={"RECOTORCH_ADMIN_TOKEN": ""}) as server:  # the explicit opt-out, with a warning
        assert httpx.post(server.url + "/admin/reload", json={"model": "b"}, timeout=60).status_code == 200
        assert "warning: --no-admin-auth" in server.output()
    with ServerProcess(root / "a", "--store", "none", "--models-root", str(root),
                       env={"RECOTORCH_ADMIN_TOKEN": "s3cret"}) as server:
        assert httpx.post(server.url + "/admin/reload", json={"model": "b"}).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.post(server.url + "/admin/reload", json={"model": "b"}, headers=wrong).status_code == 401
        right = {"Authorization": "Bearer s3cret"}
        got = httpx.post(server.url + "/admin/reload", json={"model": "b"}, headers=right, timeout=60)
        assert got.status_code == 200
