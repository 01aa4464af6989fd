"""POST /recommendations with an ordered `history`, on the real uvicorn server (`recotorch serve`).

A next-item model (SASRec, transitions) answers from the order; another model (EASE) folds the
items in; `repeats` lets history items back in; the OpenAPI schema names the fields.
"""

from __future__ import annotations

import itertools

import httpx
import polars as pl
import pytest

pytest.importorskip("fastapi")

from recotorch.artifacts import load
from recotorch.data.interactions import Interactions
from recotorch.models import make_model
from recotorch.online import recommend_from_history
from tests.helpers.server import ServerProcess

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::DeprecationWarning")]
CHAIN = list("abcdefg")  # every item occurs (starts a, b, c; five steps)


def _chains() -> Interactions:
    """Users walking the chain a -> b -> c -> ... (shifted starts): what follows c is d."""
    rows = [(u, CHAIN[u % 3 + j], 100 * u + j) for u in range(12) for j in range(5)]
    return Interactions.from_frame(pl.DataFrame(rows, schema=["user", "item", "timestamp"], orient="row"))


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("history_models")
    data = _chains()
    # repeats are asked for below, so the model must learn to rank history items (no history mask); no
    # dropout: on 48 targets it only adds noise (with it, 1-2 seeds of 6 ranked the last item over its successor)
    make_model("sasrec", dim=8, heads=1, blocks=1, max_len=5, epochs=40, lr=3e-2, batch_size=8,
               mask_history=False, dropout=0.0).fit(data).save(root / "sasrec")
    make_model("ease").fit(data).save(root / "ease")
    return root


@pytest.fixture(scope="module")
def sasrec_server(model_dirs):
    with ServerProcess(model_dirs / "sasrec", "--store", "none") as server:
        yield server


def _post(server: ServerProcess, body: dict) -> httpx.Response:
    return httpx.post(server.url + "/recommendations", json=body, timeout=60)


def test_a_history_is_answered_by_the_sequence_model(sasrec_server, model_dirs):
    answer = _post(sasrec_server, {"history": ["b", "c"], "k": 3})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["scored_by"] == "next_items" and body["user"] is None
    items = [row["item"] for row in body["items"]]
    assert items[0] == "d" and not {"b", "c"} & set(items)  # what follows c; history left out
    model = load(model_dirs / "sasrec")
    expected = model.recommend_history(["b", "c"], k=3)
    assert items == expected.item_ids(0)  # the same answer as the Python API and the CLI
    assert items == recommend_from_history(model, ["b", "c"], k=3).item_ids(0)
    scores = [row["score"] for row in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_the_order_counts(sasrec_server, model_dirs):
    def scores(history: list[str]) -> list[dict]:
        return _post(sasrec_server, {"history": history, "k": len(CHAIN), "repeats": True}).json()["items"]

    forward, backward = scores(["b", "c"]), scores(["c", "b"])
    assert forward[0]["item"] == "d"  # the item after the last one touched
    # the same items in the other order score differently (a model reading a set would not); "c, b" never
    # occurs in training, so what this toy model ranks first for it is not asserted (it varies with the seed)
    assert {row["item"]: row["score"] for row in forward} != {row["item"]: row["score"] for row in backward}
    expected = load(model_dirs / "sasrec").recommend_history(["c", "b"], k=len(CHAIN), exclude_seen=False)
    assert [row["item"] for row in backward] == expected.item_ids(0)


def test_repeats_let_history_items_back_and_filters_act_before_top_k(sasrec_server):
    n_items = len(CHAIN)
    every = _post(sasrec_server, {"history": ["b", "c"], "k": n_items, "repeats": True}).json()["items"]
    assert {row["item"] for row in every} == set(CHAIN)
    unseen = _post(sasrec_server, {"history": ["b", "c"], "k": n_items}).json()["items"]
    assert {row["item"] for row in unseen} == set(CHAIN) - {"b", "c"}
    filtered = _post(sasrec_server, {"history": ["b", "c"], "k": 2, "exclude": ["d"]}).json()["items"]
    assert len(filtered) == 2 and "d" not in {row["item"] for row in filtered}
    only = _post(sasrec_server, {"history": ["b", "c"], "k": 5, "include": ["a", "g"]}).json()["items"]
    assert {row["item"] for row in only} == {"a", "g"}


def test_bad_histories_are_refused_with_a_clear_status(sasrec_server):
    unknown = _post(sasrec_server, {"history": ["b", "nope"]})
    assert unknown.status_code == 404 and "nope" in unknown.text
    both = _post(sasrec_server, {"history": ["b"], "liked": ["c"]})
    assert both.status_code == 422 and "exactly one" in both.text
    for bad in ({"history": []}, {"history": ["b"], "repeats": "yes"}, {"history": "b"}):
        assert _post(sasrec_server, bad).status_code == 422, bad


def test_the_openapi_schema_documents_history_repeats_and_scored_by(sasrec_server):
    schema = httpx.get(sasrec_server.url + "/openapi.json", timeout=60).json()
    request = schema["components"]["schemas"]["NewUserRequest"]["properties"]
    assert {"history", "repeats"} <= set(request) and "oldest first" in request["history"]["description"]
    response = schema["components"]["schemas"]["RecommendationsOut"]["properties"]
    assert "scored_by" in response


def test_other_models_fold_the_history_in(model_dirs):
    with ServerProcess(model_dirs / "ease", "--store", "none") as server:
        body = _post(server, {"history": ["b", "c"], "k": 3}).json()
        assert body["scored_by"] == "fold_in"
        items = [row["item"] for row in body["items"]]
        liked = [row["item"] for row in _post(server, {"liked": ["b", "c"], "k": 3}).json()["items"]]
        assert items == liked and not {"b", "c"} & set(items)
        again = [row["item"] for row in _post(server, {"history": ["b", "c"], "k": 8, "repeats": True}).json()["items"]]
        assert {"b", "c"} <= set(again)
    ease = load(model_dirs / "ease")
    assert recommend_from_history(ease, ["b", "c"], k=3).item_ids(0) == items


def test_a_history_of_many_requests_gives_the_same_answer(sasrec_server):
    """The server keeps no state between requests: the same history, the same list (also under concurrency)."""
    histories = [list(p) for p in itertools.permutations("abcd", 2)]
    first = {tuple(h): _post(sasrec_server, {"history": h, "k": 4}).json()["items"] for h in histories}
    with httpx.Client(timeout=60) as client:
        for h in histories:
            again = client.post(sasrec_server.url + "/recommendations", json={"history": h, "k": 4}).json()["items"]
            assert again == first[tuple(h)]
