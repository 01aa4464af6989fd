"""Retrieval: the dot-product form ranks as the model does; the FAISS index keeps recall@10 >= 0.95."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("faiss")

from recotorch.artifacts import resolve_version
from recotorch.models import MatrixFactorization
from recotorch.serve.index import AnnIndex, dot_form, exact_top_k, recall_at_k, sample_queries
from recotorch.serve.recommender import Recommender
from tests.helpers.synthetic import synthetic_mf, toy_catalogue

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def catalogue():
    """20,000 items in 24 dimensions around 64 taste centres, 400 users with 30 seen items each."""
    return synthetic_mf(400, 20_000, 24, clusters=64, seen_per_user=30, seed=3)


def test_dot_form_reproduces_model_scores():
    model = MatrixFactorization(dim=6, epochs=5).fit(toy_catalogue())
    form = dot_form(model)
    assert form is not None and form.items.shape == (model.n_items, 7)
    for u in (0, 5, 17):
        inner = form.items @ form.users[u]
        expected = model.score(torch.tensor([u]))[0]
        assert torch.allclose(form.model_scores(u, inner), expected, atol=1e-5)
        assert torch.equal(torch.argsort(inner, descending=True)[:10], torch.argsort(expected, descending=True)[:10])


def test_dot_form_of_other_models():
    from recotorch.models.als import ImplicitALS
    from recotorch.models.base import MODELS

    data = toy_catalogue(30, 40, 10)
    als = ImplicitALS(dim=4, iterations=2).fit(data)
    form = dot_form(als)
    assert form is not None
    assert torch.allclose(form.items @ form.users[3], als.score(torch.tensor([3]))[0], atol=1e-5)
    assert dot_form(MODELS["bias"]().fit(data)) is None  # no vectors: always scored exactly


def test_index_recall_on_held_out_users(catalogue):
    form = dot_form(catalogue)
    items = form.items.numpy()
    index = AnnIndex.build(items, sample_queries(form.users[:200]), target_recall=0.97)
    assert index.info.nprobe < index.info.nlist  # the index does less work than a scan
    held_out = form.users[200:].numpy()  # users the tuning never saw
    found, _ = index.search(held_out, 10)
    recall = recall_at_k(found, exact_top_k(held_out, items, 10))
    assert recall >= 0.95, (recall, index.info)


def test_iid_gaussian_vectors_still_reach_the_target():
    model = synthetic_mf(300, 5_000, 16, clusters=0, seen_per_user=5, seed=1)
    form = dot_form(model)
    index = AnnIndex.build(form.items.numpy(), sample_queries(form.users), target_recall=0.95)
    assert index.info.recall_at_10 >= 0.95  # by probing more cells, up to all of them


def test_served_lists_against_exact_scoring(catalogue, tmp_path):
    catalogue.save(tmp_path / "m")
    ann = Recommender.load(tmp_path / "m", ann_threshold=1000)
    exact = Recommender.load(tmp_path / "m", ann_threshold=10**9)
    assert ann.index is not None and exact.index is None
    hits = []
    for user in range(1, 401, 4):
        got = ann.recommend(user, 10)
        want = exact.recommend(user, 10)
        seen = set(catalogue.items_.lookup(catalogue.seen_.row(user - 1).numpy()))
        assert len(got) == 10 and not seen & {r["item"] for r in got}
        scores = [r["score"] for r in got]
        assert scores == sorted(scores, reverse=True)
        hits.append(len({r["item"] for r in got} & {r["item"] for r in want}) / 10)
    assert np.mean(hits) >= 0.95


def test_filters_with_the_index(catalogue, tmp_path):
    catalogue.save(tmp_path / "m")
    ann = Recommender.load(tmp_path / "m", ann_threshold=1000)
    top = [r["item"] for r in ann.recommend(7, 10)]
    without = [r["item"] for r in ann.recommend(7, 10, exclude=top[:3])]
    assert not set(top[:3]) & set(without) and len(without) == 10
    few = [f"sku-{i:07d}" for i in range(1, 41)]  # a selective filter falls back to exact masked scoring
    exact = Recommender.load(tmp_path / "m", ann_threshold=10**9)
    assert ann.recommend(7, 5, include=few) == exact.recommend(7, 5, include=few)
    allowed = np.zeros(catalogue.n_items, dtype=bool)
    allowed[::3] = True  # a broad filter is applied inside the FAISS search
    found, _ = ann.index.search(ann.form.users[6].numpy()[None], 20, allowed)
    assert (found[0] >= 0).all() and (found[0] % 3 == 0).all()


def test_index_is_cached_with_the_model(tmp_path):
    catalogue = synthetic_mf(50, 3_000, 8, seen_per_user=5, seed=5)
    catalogue.save(tmp_path / "m")
    first = Recommender.load(tmp_path / "m", ann_threshold=1000, save_index=True)
    assert (resolve_version(tmp_path / "m") / "ann.faiss").is_file()  # stored with the version it belongs to
    again = Recommender.load(tmp_path / "m", ann_threshold=1000)
    assert again.index.info == first.index.info  # read back, not rebuilt
    with torch.no_grad():
        catalogue.module_.item_factors.weight[0] += 1.0
    catalogue.save(tmp_path / "m2")
    import shutil

    for name in ("ann.faiss", "ann.json"):
        shutil.copy(resolve_version(tmp_path / "m") / name, resolve_version(tmp_path / "m2") / name)
    items = dot_form(catalogue).items.numpy()
    assert AnnIndex.load_if_matching(resolve_version(tmp_path / "m2"), items) is None  # other vectors: ignored
