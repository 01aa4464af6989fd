"""Interaction strength: the one duplicate policy (aggregation) and `--weights` for implicit models."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import torch

from recotorch.data.implicit import WEIGHTS, confidence, to_implicit
from recotorch.data.interactions import Interactions
from recotorch.data.readers import read_interactions
from recotorch.data.synthetic import play_log, purchase_log
from recotorch.models.ease import EASE
from recotorch.models.itemknn import ItemKNN

HANG_GUARD = 600

# c1 buys a three times (qty 1, 2, 1), b once; c2 buys a once and b twice (ISO times, string ids)
ROWS = {
    "customer_id": ["c1", "c1", "c2", "c1", "c2", "c1", "c2"],
    "sku": ["a", "b", "a", "a", "b", "a", "b"],
    "qty": [1, 5, 2, 2, 1, 1, 3],
    "ts": ["2024-01-01T10:00:00", "2024-01-02T10:00:00", "2024-01-03T10:00:00", "2024-01-04T10:00:00",
           "2024-01-05T10:00:00", "2024-01-03T09:00:00", "2024-01-06T10:00:00"],
}
COLS = {"user": "customer_id", "item": "sku", "rating": "qty", "timestamp": "ts"}


def _by_pair(data: Interactions) -> dict[tuple[str, str], tuple]:
    frame = data.to_frame(counts=True)
    return {(r["user"], r["item"]): (r["count"], r["value_sum"], r["rating"], r["timestamp"])
            for r in frame.iter_rows(named=True)}


@pytest.fixture
def orders(tmp_path):
    path = tmp_path / "orders.csv"
    pl.DataFrame(ROWS).write_csv(path)
    return path


def test_repeats_are_aggregated_with_count_sum_and_latest(orders, caplog):
    with caplog.at_level(logging.INFO, logger="recotorch"):
        data = read_interactions(orders, **COLS)
    jan4 = 1704362400  # 2024-01-04T10:00:00Z: c1's latest purchase of a (the row with qty 2)
    assert _by_pair(data)[("c1", "a")] == (3, 4.0, 2.0, jan4)
    assert _by_pair(data)[("c2", "b")] == (2, 4.0, 3.0, 1704535200)
    assert _by_pair(data)[("c1", "b")] == (1, 5.0, 5.0, 1704189600)
    assert (data.meta["rows_in"], data.meta["pairs_out"], data.meta["duplicates_aggregated"]) == (7, 4, 3)
    lines = [r.getMessage() for r in caplog.records if "aggregated" in r.getMessage()]
    assert len(lines) == 1 and "orders.csv: 7 rows -> 4 (user, item) pairs: 3 repeat rows" in lines[0]
    assert "sum of its qty" in lines[0]


def test_every_constructor_has_the_same_policy(orders):
    from_file = read_interactions(orders, **COLS)
    frame = pl.DataFrame(ROWS).rename({v: k for k, v in COLS.items()})
    frame = frame.with_columns(pl.col("timestamp").str.to_datetime().dt.epoch("s"))
    from_frame = Interactions.from_frame(frame)
    assert _by_pair(from_file) == _by_pair(from_frame)
    assert from_file.to_frame().equals(from_frame.to_frame())  # same pairs in the same order
    for key in ("rows_in", "pairs_out", "duplicates_aggregated"):
        assert from_file.meta[key] == from_frame.meta[key]
    kept = Interactions.from_frame(frame, duplicates="keep")
    assert len(kept) == 7 and _by_pair(kept.aggregated()) == _by_pair(from_frame)  # aggregating later: the same
    assert _by_pair(from_frame.aggregated()) == _by_pair(from_frame)  # idempotent


def test_ratings_keep_the_latest_rating_ties_by_file_order():
    frame = pl.DataFrame({"user": [1, 1, 1], "item": [7, 7, 7], "rating": [5.0, 2.0, 4.0], "timestamp": [9, 3, 9]})
    data = Interactions.from_frame(frame)
    assert data.rating.tolist() == [4.0] and data.count.tolist() == [3] and data.timestamp.tolist() == [9]


@pytest.mark.parametrize("weights", WEIGHTS)
def test_each_weights_mode(orders, weights):
    data = to_implicit(read_interactions(orders, **COLS), weights=weights)
    got = {k: v[2] for k, v in _by_pair(data).items()}  # rating holds the confidence
    counts = {("c1", "a"): 3, ("c1", "b"): 1, ("c2", "a"): 1, ("c2", "b"): 2}
    sums = {("c1", "a"): 4.0, ("c1", "b"): 5.0, ("c2", "a"): 2.0, ("c2", "b"): 4.0}
    expected = {"binary": dict.fromkeys(counts, 1.0), "count": counts, "sum": sums,
                "log1p": {k: float(np.log1p(v)) for k, v in sums.items()}}[weights]
    assert got == pytest.approx(expected)
    assert data.meta["implicit"]["weights"] == weights
    users, items, conf = confidence(data)  # what the models see: the same, divided by the mean
    order = [("c1", "a"), ("c1", "b"), ("c2", "a"), ("c2", "b")]  # vocabularies in order of appearance
    assert users.tolist() == [0, 0, 1, 1] and items.tolist() == [0, 1, 0, 1]
    ev = torch.tensor([expected[k] for k in order], dtype=torch.float32)
    assert torch.allclose(conf, ev / ev.mean())


def test_without_a_value_column_sum_is_the_row_count(orders):
    data = to_implicit(read_interactions(orders, user="customer_id", item="sku", rating=None, timestamp="ts"),
                       weights="sum")
    assert {k: v[2] for k, v in _by_pair(data).items()}[("c1", "a")] == 3.0


def test_repeat_purchases_change_ease_scores(orders):
    data = read_interactions(orders, **COLS)
    binary = EASE(reg=1.0).fit(to_implicit(data, weights="binary"))
    count = EASE(reg=1.0).fit(to_implicit(data, weights="count"))
    assert not torch.allclose(binary.score(torch.arange(2)), count.score(torch.arange(2)))
    # the same pairs bought once each: count weights equal binary ones
    once = Interactions.from_frame(data.to_frame().drop("rating"), rating=None)
    assert torch.allclose(EASE(reg=1.0).fit(to_implicit(once, weights="count")).score(torch.arange(2)),
                          binary.score(torch.arange(2)))


def test_item_knn_links_from_0_1_or_from_the_weights():
    log = play_log(n_users=200, n_items=120, artists=12, seed=1)
    data = Interactions.from_frame(log, rating="plays")
    binary, log1p = to_implicit(data, weights="binary"), to_implicit(data, weights="log1p")
    plain = ItemKNN(neighbours=20).fit(binary)
    default = ItemKNN(neighbours=20).fit(log1p)  # links from 0/1, the weights only in the user's row
    assert torch.equal(default.similarity_, plain.similarity_)
    assert not torch.allclose(default.score(torch.arange(5)), plain.score(torch.arange(5)))
    weighted = ItemKNN(neighbours=20, links_from="weights").fit(log1p)
    assert not torch.allclose(weighted.similarity_, plain.similarity_)


def test_ease_links_from_0_1_and_own_weight_mix_in_the_users_own_strength(orders):
    data = to_implicit(read_interactions(orders, **COLS), weights="count")
    binary = EASE(reg=1.0).fit(to_implicit(read_interactions(orders, **COLS), weights="binary"))
    counted = EASE(reg=1.0, own_weight=0.0).fit(data)
    assert torch.equal(counted.weights_, binary.weights_)  # W from which items each user bought
    assert not torch.allclose(EASE(reg=1.0, links_from="weights").fit(data).weights_, binary.weights_)
    users = torch.arange(2)
    rows = counted.user_rows(users).to_dense().cpu()  # x_u: the counts divided by their mean
    for a in (0.3, 1.0):
        mixed = EASE(reg=1.0, own_weight=a).fit(data)
        assert torch.allclose(mixed.score(users), (1 - a) * counted.score(users) + a * rows, atol=1e-6)
        assert torch.allclose(mixed.score(users, torch.tensor([0, 1])),
                              mixed.score(users)[users, torch.tensor([0, 1])])  # pair scores agree
    # repeats allowed: c1's most-bought SKU (a, 3 purchases) comes before b (1 purchase)
    top = EASE(reg=1.0, own_weight=0.5).fit(data).recommend(["c1"], k=2, exclude_seen=False).to_frame()
    assert top["item"].to_list() == ["a", "b"]
    assert binary.get_params()["own_weight"] == 0.5 and binary.get_params()["links_from"] == "binary"


def test_generators_make_repeats_and_heavy_tails():
    buys = purchase_log(n_users=200, n_items=300, seed=2)
    assert buys.columns == ["customer_id", "sku", "qty", "ts"] and buys["customer_id"].dtype == pl.String
    assert buys.select("customer_id", "sku").is_duplicated().any()  # repeat purchases
    assert buys["ts"].str.to_datetime("%Y-%m-%dT%H:%M:%S").is_sorted()
    plays = play_log(n_users=200, n_items=300, seed=2)
    assert not plays.select("user", "item").is_duplicated().any()
    assert plays["plays"].max() > 20 * plays["plays"].median()  # heavy tail


# ---- the CLI -----------------------------------------------------------------------------------
def _fit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recotorch", "fit", *args], capture_output=True, text=True,
                          timeout=HANG_GUARD)


@pytest.mark.slow
def test_cli_weights_reach_the_model_and_the_aggregation_is_reported(orders, tmp_path):
    flags = ["--user-col", "customer_id", "--item-col", "sku", "--rating-col", "qty", "--time-col", "ts",
             "--model", "ease", "--set", "reg=1"]
    done = _fit(str(orders), "--out", str(tmp_path / "count"), "--weights", "count", *flags)
    assert done.returncode == 0, done.stderr
    assert "7 rows -> 4 (user, item) pairs: 3 repeat rows aggregated" in done.stderr + done.stdout
    assert "weights count" in done.stdout
    done = _fit(str(orders), "--out", str(tmp_path / "binary"), "--weights", "binary", *flags)
    assert done.returncode == 0, done.stderr
    import recotorch as rt

    count, binary = rt.load(tmp_path / "count"), rt.load(tmp_path / "binary")
    expected = EASE(reg=1.0).fit(to_implicit(read_interactions(orders, **COLS), weights="count"))
    assert torch.allclose(count.score(torch.arange(2)), expected.score(torch.arange(2)), atol=1e-5)
    assert not torch.allclose(count.score(torch.arange(2)), binary.score(torch.arange(2)))


def test_cli_refuses_a_bad_weights_value_in_one_line(orders, tmp_path):
    done = _fit(str(orders), "--out", str(tmp_path / "m"), "--model", "ease", "--weights", "squared",
                "--user-col", "customer_id", "--item-col", "sku")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--weights" in lines[0] and "log1p" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "m").exists()
    done = _fit(str(orders), "--out", str(tmp_path / "m"), "--model", "mf", "--weights", "count",
                "--user-col", "customer_id", "--item-col", "sku", "--rating-col", "qty")
    assert done.returncode == 2 and "--weights" in done.stderr


@pytest.fixture
def cli(capsys, monkeypatch):
    from tests.helpers.cli import cli_fixture

    yield from cli_fixture(capsys, monkeypatch)


def _ndcg10(stdout: str) -> float:
    row = next(line for line in stdout.splitlines() if "ndcg@10" in line)
    return float(row.split("│")[2])


def test_cli_evaluate_include_seen_scores_repeat_purchases(orders, tmp_path, cli):
    model = tmp_path / "m"
    code, _, err = cli("fit", orders, "--out", model, "--model", "ease", "--set", "reg=1", "--weights", "count",
                       "--user-col", "customer_id", "--item-col", "sku", "--rating-col", "qty", "--time-col", "ts")
    assert code == 0, err
    later = tmp_path / "later.csv"  # the next purchases: c1 re-buys a, c2 re-buys b
    pl.DataFrame({"customer_id": ["c1", "c2"], "sku": ["a", "b"], "qty": [1, 1],
                  "ts": ["2024-02-01T10:00:00"] * 2}).write_csv(later)
    code, out, err = cli("evaluate", model, later)
    assert code == 0 and _ndcg10(out) == 0.0  # seen items are masked: a repeat can never be hit
    assert "2 of the 2 (user, item) pairs" in err and "--include-seen" in err
    code, out, err = cli("evaluate", model, later, "--include-seen")
    assert code == 0 and _ndcg10(out) == 1.0  # each customer's most-bought item ranks first
    assert "note: 2 of the 2 (user, item) pairs" in err and "warning" not in err
    code, _, err = cli("evaluate", model, later, "--include-seen", "--strict")
    assert code == 2 and "--strict" in err


@pytest.mark.parametrize(("model", "expected"), [("als", "count"), ("ease", "log1p")])
def test_without_weights_fit_takes_the_models_default_and_records_it(model, expected, orders, tmp_path, cli):
    out = tmp_path / model
    setting = "dim=4" if model == "als" else "reg=1"
    code, stdout, err = cli("fit", orders, "--out", out, "--model", model, "--set", setting,
                            "--user-col", "customer_id", "--item-col", "sku", "--rating-col", "qty", "--time-col", "ts")
    assert code == 0, err
    assert f"weights {expected}" in stdout
    from recotorch.artifacts import read_file

    assert json.loads(read_file(out, "schema.json"))["options"]["weights"] == expected


def test_weights_are_refused_for_a_model_that_does_not_use_them(orders, tmp_path, cli):
    flags = ("--user-col", "customer_id", "--item-col", "sku", "--rating-col", "qty")
    code, _, err = cli("fit", orders, "--out", tmp_path / "m", "--model", "pop", "--weights", "count", *flags)
    assert code == 2 and "--weights" in err and "does not use weights" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()
    code, stdout, err = cli("fit", orders, "--out", tmp_path / "m", "--model", "pop", *flags)
    assert code == 0, err
    assert "weights binary" in stdout  # every pair counts the same, and the output says so
