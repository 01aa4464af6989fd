"""Top-N (implicit-feedback) models on planted block data: each ranks its block first, similar items
come from the same block; the shared contract of every registered model is tests/test_model_contract.py,
repeated here only for option VARIANTS its tiny configurations do not reach."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

import recotorch as rt
from recotorch.data.implicit import to_implicit
from recotorch.data.interactions import Interactions
from recotorch.models import make_model
from recotorch.models.als import ImplicitALS
from recotorch.models.ease import EASE
from recotorch.models.itemknn import ItemKNN
from recotorch.models.popularity import MostPopular
from recotorch.models.ranking_mf import BCEMF, BPRMF, RankingMF

N_BLOCKS, USERS_PER_BLOCK, ITEMS_PER_BLOCK = 3, 20, 10
_FAST = {"dim": 8, "epochs": 10, "batch_size": 128, "lr": 5e-2, "weight_decay": 0.01}

FACTORIES = {
    "pop": lambda: MostPopular(),
    "itemknn": lambda: ItemKNN(neighbours=10),
    "itemknn_bm25": lambda: ItemKNN(neighbours=10, weighting="bm25"),
    "ease": lambda: EASE(reg=5.0),
    "als": lambda: ImplicitALS(dim=8, reg=1.0, alpha=5.0, iterations=10),
    "als_cholesky": lambda: ImplicitALS(dim=8, reg=1.0, alpha=5.0, iterations=10, solver="cholesky"),
    "bpr": lambda: BPRMF(n_neg=4, **_FAST),
    "bce": lambda: BCEMF(n_neg=4, **_FAST),
    "softmax": lambda: RankingMF(loss="softmax", n_neg=16, sampler="uniform", **_FAST),
    "softmax_popularity": lambda: RankingMF(loss="softmax", n_neg=16, sampler="popularity", **_FAST),
    "softmax_in_batch": lambda: RankingMF(loss="softmax", sampler="in_batch", **_FAST),
}
PERSONAL = [name for name in FACTORIES if name != "pop"]
# options of registered models that the contract test's tiny configurations do not exercise
VARIANTS = ["itemknn_bm25", "als_cholesky", "softmax", "softmax_in_batch"]


def planted_blocks(seed: int = 0) -> tuple[Interactions, dict[int, str]]:
    """Users of block b interact with every item of block b but one (held out); returns (data, held out)."""
    g = torch.Generator().manual_seed(seed)
    rows, held = [], {}
    for b in range(N_BLOCKS):
        for j in range(USERS_PER_BLOCK):
            user = 1000 + b * USERS_PER_BLOCK + j
            skip = int(torch.randint(ITEMS_PER_BLOCK, (1,), generator=g))
            held[user] = f"i{b * ITEMS_PER_BLOCK + skip}"
            rows += [(user, f"i{b * ITEMS_PER_BLOCK + k}") for k in range(ITEMS_PER_BLOCK) if k != skip]
    order = torch.randperm(len(rows), generator=g).tolist()
    frame = pl.DataFrame({"user": [rows[k][0] for k in order], "item": [rows[k][1] for k in order]})
    return Interactions.from_frame(frame, rating=None, timestamp=None, source="blocks"), held


def block_of(item: str) -> int:
    return int(item[1:]) // ITEMS_PER_BLOCK


@pytest.fixture(scope="module")
def fitted() -> dict[str, tuple[rt.Estimator, Interactions, dict[int, str]]]:
    data, held = planted_blocks()
    return {name: (make().fit(data), data, held) for name, make in FACTORIES.items()}


@pytest.mark.parametrize("name", PERSONAL)
def test_held_out_item_ranks_first(fitted, name):
    """Every personalised model must put the one unseen item of the user's own block on top."""
    model, _, held = fitted[name]
    users = sorted(held)
    recs = model.recommend(users, k=1)
    top = [recs.item_ids(r)[0] for r in range(len(users))]
    hits = sum(t == held[u] for t, u in zip(top, users, strict=True))
    assert hits == len(users), f"{name}: {hits}/{len(users)} held-out items ranked first"


def test_most_popular_ranks_by_count():
    frame = pl.DataFrame({"user": [1, 2, 3, 1, 2, 4], "item": ["a", "a", "a", "b", "b", "c"]})
    data = Interactions.from_frame(frame, rating=None, timestamp=None)
    model = MostPopular().fit(data)
    assert model.recommend([4], k=3).item_ids(0) == ["a", "b"]  # c is seen; slots beyond the catalogue empty
    assert model.recommend([3], k=1).item_ids(0) == ["b"]
    pred = model.predict([999, 1, 1], ["a", "zzz", "c"])
    assert pred.values.tolist() == [3.0, 0.0, 1.0] and pred.known.tolist() == [False, False, True]


def test_most_popular_can_sum_weights():
    frame = pl.DataFrame({"user": [1, 2, 3], "item": ["a", "a", "b"], "rating": [1.0, 1.0, 5.0]})
    data = Interactions.from_frame(frame, timestamp=None)
    assert MostPopular(use_weights=True).fit(data).recommend([1], k=1).item_ids(0) == ["b"]
    assert MostPopular().fit(data).recommend([3], k=1).item_ids(0) == ["a"]


@pytest.mark.parametrize("name", VARIANTS)
def test_pair_scores_match_full_catalogue_scores(fitted, name):
    model = fitted[name][0]
    users = torch.tensor([0, 3, 7, 3, 59])
    items = torch.tensor([0, 5, 11, 29, 3])
    full = model.score(users)
    assert full.shape == (5, model.n_items)
    torch.testing.assert_close(model.score(users, items), full[torch.arange(5), items], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", VARIANTS)
def test_save_load_round_trip_gives_identical_recommendations(fitted, name, tmp_path):
    model, _, held = fitted[name]
    users = sorted(held)[:15]
    model.save(tmp_path / name)
    again = rt.load(tmp_path / name)
    assert type(again) is type(model) and again.get_params() == model.get_params()
    before, after = model.recommend(users, k=5), again.recommend(users, k=5)
    assert torch.equal(before.item_idx, after.item_idx)
    torch.testing.assert_close(before.scores, after.scores)


@pytest.mark.parametrize("name", VARIANTS)
def test_recommend_excludes_seen_items_never_repeats_and_refuses_unknown_users(fitted, name):
    model, _, held = fitted[name]
    users = sorted(held)
    recs = model.recommend(users, k=25)  # more than the 21 unseen items: empty slots at the end
    for row, user in enumerate(users):
        items = recs.item_idx[row]
        items = items[items >= 0]
        assert len(set(items.tolist())) == items.numel() == model.n_items - ITEMS_PER_BLOCK + 1
        u = int(model.users_.index([user])[0])
        assert not set(items.tolist()) & set(model.seen_.row(u).tolist())
    with pytest.raises(KeyError, match="unknown user"):
        model.recommend(["nobody"], k=5)


@pytest.mark.parametrize("name", VARIANTS)
def test_unknown_ids_get_the_fallback(fitted, name):
    model = fitted[name][0]
    pred = model.predict([1000, -5, -5], ["i0", "i0", "nope"])
    assert pred.known.tolist() == [True, False, False]
    assert np.isfinite(pred.values).all() and pred.values[2] == 0.0


@pytest.mark.parametrize("name", PERSONAL)
def test_similar_items_come_from_the_same_block(fitted, name):
    model = fitted[name][0]
    sims = model.similar_items(["i0", "i15", "i27"], k=5)
    for row, item in enumerate(["i0", "i15", "i27"]):
        found = sims.item_ids(row)
        assert item not in found and len(found) == 5
        assert all(block_of(f) == block_of(item) for f in found), (name, item, found)
    with pytest.raises(KeyError, match="unknown item"):
        model.similar_items(["nope"])


def test_most_popular_has_no_item_vectors(fitted):
    with pytest.raises(NotImplementedError):
        fitted["pop"][0].similar_items(["i0"])


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_fits_are_reproducible_and_leave_global_rng_alone(name):
    data, _ = planted_blocks()
    state = torch.random.get_rng_state()
    a, b = FACTORIES[name]().fit(data), FACTORIES[name]().fit(data)
    assert torch.equal(state, torch.random.get_rng_state())
    assert torch.equal(a.item_vectors(), b.item_vectors())
    c = FACTORIES[name]()
    c.seed = 7
    assert not torch.equal(a.item_vectors(), c.fit(data).item_vectors())


def test_gradient_ranking_models_validate_and_find_lr():
    data, held = planted_blocks()
    valid = Interactions.from_frame(pl.DataFrame({"user": list(held), "item": list(held.values())}),
                                    rating=None, timestamp=None)
    model = BPRMF(dim=8, epochs=3, batch_size=128, patience=5).fit(data, valid)
    losses = [e.valid_loss for e in model.history_.epochs]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert RankingMF(dim=8, batch_size=64).find_lr(data, steps=20).suggestion > 0  # works before any fit


def test_registered_names_and_fixed_losses():
    assert isinstance(make_model("pop"), MostPopular) and isinstance(make_model("ease"), EASE)
    assert isinstance(make_model("itemknn"), ItemKNN) and isinstance(make_model("als"), ImplicitALS)
    bpr, bce = make_model("bpr", dim=8), make_model("bce")
    assert type(bpr) is BPRMF and bpr.loss == "bpr" and "loss" not in bpr.get_params()
    assert type(bce) is BCEMF and bce.loss == "bce"
    assert make_model("ranking_mf", loss="bpr").loss == "bpr"
    with pytest.raises(ValueError, match="does not take"):
        make_model("bpr", loss="bce")
    assert all(m.task == "ranking" for m in (bpr, bce, make_model("ease"), make_model("pop")))


def test_invalid_options_are_refused():
    data, _ = planted_blocks()
    with pytest.raises(ValueError, match="in_batch"):
        RankingMF(loss="bpr", sampler="in_batch", epochs=1).fit(data)
    with pytest.raises(ValueError, match="weighting"):
        ItemKNN(weighting="jaccard").fit(data)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="solver"):
        ImplicitALS(solver="lu").fit(data)  # type: ignore[arg-type]


# ---- to_implicit ---------------------------------------------------------------------------
def _ratings() -> Interactions:
    frame = pl.DataFrame({"user": [1, 1, 2, 2, 2, 3], "item": ["a", "b", "a", "a", "c", "b"],
                          "rating": [5.0, 2.0, 4.0, 3.0, 1.0, 4.5], "timestamp": [10, 11, 12, 30, 14, 15]})
    return Interactions.from_frame(frame)


def _pairs(data: Interactions) -> dict[tuple[int, str], float]:
    frame = data.to_frame()
    return {(u, i): r for u, i, r in zip(frame["user"], frame["item"], frame["rating"], strict=True)}


def test_to_implicit_binarises_at_threshold():
    out = to_implicit(_ratings(), threshold=4, weights="binary")
    # (2, "a") was rated 4 then 3: the latest rating (3) decides, as for rating models
    assert _pairs(out) == {(1, "a"): 1.0, (3, "b"): 1.0}
    assert out.users == _ratings().users and out.items == _ratings().items  # vocabularies kept
    assert out.meta["implicit"] == {"threshold": 4, "weights": "binary", "rows_in": 6, "pairs": 5, "pairs_kept": 2}


def test_to_implicit_weights_from_counts_or_sums():
    data = _ratings()
    assert _pairs(to_implicit(data, weights="count"))[(2, "a")] == 2.0
    assert _pairs(to_implicit(data, weights="sum"))[(2, "a")] == 7.0
    assert _pairs(to_implicit(data, weights="log1p"))[(2, "a")] == pytest.approx(np.log1p(7.0))
    binary = to_implicit(data, weights="binary")
    assert len(binary) == 5 and set(binary.rating.tolist()) == {1.0}
    ts = dict(zip(zip(binary.to_frame()["user"], binary.to_frame()["item"], strict=True),
                  binary.timestamp.tolist(), strict=True))
    assert ts[(2, "a")] == 30  # the latest timestamp of the merged rows
    assert binary.to_frame()["item"].to_list() == ["a", "b", "a", "c", "b"]  # at each pair's latest row


def test_to_implicit_needs_ratings_to_threshold():
    from dataclasses import replace

    with pytest.raises(ValueError, match="no ratings"):
        to_implicit(replace(_ratings(), rating=None, value_sum=None), threshold=4)
    with pytest.raises(ValueError, match="weights"):
        to_implicit(_ratings(), weights="log")  # type: ignore[arg-type]
    assert to_implicit(replace(_ratings(), rating=None, value_sum=None), weights="sum").rating.tolist() == [
        1.0, 1.0, 2.0, 1.0, 1.0]  # without values each row counts 1
    assert len(to_implicit(replace(_ratings(), rating=None, value_sum=None))) == 5
