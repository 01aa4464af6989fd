"""HybridMF: ids plus side features, scoring items that only have metadata."""

from __future__ import annotations

import polars as pl
import pytest
import torch

import recotorch as rt
from recotorch.data.implicit import to_implicit
from recotorch.data.interactions import Interactions
from recotorch.evaluate.cold import _auc
from recotorch.models.hybrid import HybridMF, item_tokens, user_tokens

GENRES = ("Action", "Romance", "Horror")


pytestmark = pytest.mark.usefixtures("one_thread")


def genre_world(n_users: int = 90, n_items: int = 90, per_user: int = 12, seed: int = 0
                ) -> tuple[Interactions, pl.DataFrame]:
    """User u likes genre u % 3 (rates it 5) and dislikes the rest (rates 1); item j has genre j % 3.

    Returns (interactions of the first 2/3 of the items, feature rows of the last third: metadata only).
    """
    g = torch.Generator().manual_seed(seed)
    known = n_items * 2 // 3
    users, items, ratings = [], [], []
    for u in range(n_users):
        liked = [j for j in range(known) if j % 3 == u % 3]
        other = [j for j in range(known) if j % 3 != u % 3]
        pick_l = torch.randperm(len(liked), generator=g)[: per_user].tolist()
        pick_o = torch.randperm(len(other), generator=g)[:3].tolist()
        for j in pick_l:
            users.append(u), items.append(liked[j]), ratings.append(5.0)
        for j in pick_o:
            users.append(u), items.append(other[j]), ratings.append(1.0)
    frame = pl.DataFrame({"user": users, "item": items, "rating": ratings, "timestamp": list(range(len(users)))})
    features = pl.DataFrame({"id": list(range(n_items)), "title": [f"Film number {j}" for j in range(n_items)],
                             "year": [1950 + 7 * (j % 7) for j in range(n_items)],
                             "genres": [[GENRES[j % 3]] for j in range(n_items)]})
    people = pl.DataFrame({"id": list(range(n_users)), "age": [20 + u % 40 for u in range(n_users)],
                           "gender": ["F" if u % 2 else "M" for u in range(n_users)],
                           "occupation": ["student"] * n_users})
    data = Interactions.from_frame(frame).with_features(item_features=features, user_features=people)
    return data, features.filter(pl.col("id") >= known)


FAST = {"dim": 8, "epochs": 12, "batch_size": 128, "lr": 5e-2, "weight_decay": 0.05, "min_count": 1}


@pytest.fixture(scope="module")
def world() -> tuple[Interactions, pl.DataFrame]:
    return genre_world()


@pytest.fixture(scope="module")
def ranker(world) -> HybridMF:
    data, _ = world
    return HybridMF(task="ranking", **FAST).fit(to_implicit(data, threshold=4))


@pytest.fixture(scope="module")
def rater(world) -> HybridMF:
    return HybridMF(task="rating", **FAST).fit(world[0])


def _relevance(users: list, new_items: pl.DataFrame) -> torch.Tensor:
    return torch.tensor([[int(i) % 3 == int(u) % 3 for i in new_items["id"]] for u in users])


def test_metadata_only_items_are_ranked_by_genre(ranker, world):
    """Scores for never-seen items depend only on their genre here, so the hybrid must rank them well."""
    _, new_items = world
    users = ranker.users_.ids.to_list()
    scores = ranker.score_new_items(users, new_items)
    assert scores.shape == (len(users), len(new_items))
    auc = _auc(scores, _relevance(users, new_items))
    random_auc = _auc(torch.rand(scores.shape, generator=torch.Generator().manual_seed(0)),
                      _relevance(users, new_items))
    assert auc > 0.9 and abs(random_auc - 0.5) < 0.1, (auc, random_auc)


def test_without_item_features_new_items_cannot_be_told_apart(world):
    data, new_items = world
    model = HybridMF(task="ranking", item_features=(), **{**FAST, "epochs": 1}).fit(to_implicit(data, threshold=4))
    scores = model.score_new_items(model.users_.ids.to_list()[:5], new_items)
    assert torch.allclose(scores, scores[:, :1].expand_as(scores))  # only the user's bias is left


def test_rating_task_predicts_liked_genres_higher(rater, world):
    _, new_items = world
    users = rater.users_.ids.to_list()
    scores = rater.score_new_items(users, new_items)
    liked = _relevance(users, new_items)
    assert scores[liked].mean() > scores[~liked].mean() + 1.5
    lo, hi = rater.rating_range_
    assert lo <= float(scores.min()) and float(scores.max()) <= hi


def test_recommend_over_catalogue_and_new_items(ranker, world):
    _, new_items = world
    user = ranker.users_.ids[0]
    recs = ranker.recommend([user], k=10, new_items=new_items)
    ids = recs.item_ids(0)
    seen = set(ranker.items_.lookup(ranker.seen_.row(0).numpy()))
    assert not seen & set(ids)
    assert any(i in set(new_items["id"].to_list()) for i in ids)
    assert all(int(i) % 3 == int(user) % 3 for i in ids[:5])
    only_new = ranker.recommend([user], k=5, new_items=new_items, include=new_items["id"].to_list()).item_ids(0)
    assert set(only_new) <= set(new_items["id"].to_list())
    with pytest.raises(ValueError):  # a "new" item that is already in the catalogue
        ranker.recommend([user], k=5, new_items=new_items.with_columns(pl.lit(0).alias("id")).head(1))


def test_feature_weights_are_exposed(rater):
    weights = rater.feature_weights()
    assert {"side", "feature", "group", "norm", "bias", "count"} <= set(weights.columns)
    genres = weights.filter(pl.col("group") == "genre")
    assert sorted(genres["feature"].to_list()) == sorted(f"genre:{g}" for g in GENRES)
    assert set(weights["side"].to_list()) == {"item", "user"}
    assert (weights.filter(pl.col("side") == "item")["norm"].diff().drop_nulls() <= 0).all()


def test_save_load_round_trip(rater, world, tmp_path):
    _, new_items = world
    rater.save(tmp_path / "hybrid")
    loaded = rt.load(tmp_path / "hybrid")
    assert isinstance(loaded, HybridMF) and loaded.item_feature_names_ == rater.item_feature_names_
    users = torch.arange(4)
    torch.testing.assert_close(loaded.score(users), rater.score(users))
    torch.testing.assert_close(loaded.score_new_items([0, 1], new_items), rater.score_new_items([0, 1], new_items))
    assert loaded.predict([0, "nobody"], [0, 0]).known.tolist() == [True, False]


def test_tokens_and_min_count():
    items = pl.DataFrame({"id": [1, 2, 3], "title": ["The Star Wars", "Star Trek", None], "year": [1977, 1940, None],
                          "genres": [["Action", "Sci-Fi"], [], ["Drama"]]})
    tokens = item_tokens(items)
    by_row = {r: set(g["token"]) for (r,), g in tokens.group_by("row")}
    assert by_row[0] == {"genre:Action", "genre:Sci-Fi", "year:1970s", "word:star", "word:wars"}
    assert by_row[1] == {"year:<1950", "word:star", "word:trek"}
    assert by_row[2] == {"genre:Drama"}
    weight = tokens.filter((pl.col("row") == 0) & (pl.col("token") == "genre:Action"))["weight"][0]
    assert weight == pytest.approx(2 ** -0.5)
    people = user_tokens(pl.DataFrame({"id": [1], "age": [30], "gender": ["F"], "occupation": ["writer"]}))
    assert set(people["token"]) == {"age:25-34", "gender:F", "occupation:writer"}


def test_min_count_drops_rare_features(world):
    data, _ = world
    model = HybridMF(task="rating", **{**FAST, "min_count": 10_000, "epochs": 1}).fit(data)
    assert model.item_feature_names_ == [] and model.user_feature_names_ == []
    assert model.feature_weights().is_empty()


def test_one_network_two_estimators_behind_the_registered_name(tmp_path):
    from recotorch.errors import OptionError
    from recotorch.models import make_model
    from recotorch.models.hybrid import HybridRankingMF, HybridRatingMF

    rating, ranking = HybridMF(), make_model("hybrid", task="ranking")
    assert type(rating) is HybridRatingMF and type(ranking) is HybridRankingMF
    assert isinstance(rating, HybridMF) and rating.name == ranking.name == "hybrid"
    assert rating.supports("fold_in") and not ranking.supports("fold_in")
    assert ranking.get_params()["task"] == "ranking" and ranking.clone().task == "ranking"
    assert type(HybridRankingMF(dim=4)) is HybridRankingMF
    with pytest.raises(OptionError, match="task"):
        HybridRatingMF(task="ranking")
    with pytest.raises(OptionError, match="task: must be 'rating' or 'ranking'"):
        HybridMF(task="both")
