"""The contract every registered model keeps, driven by the registry: a new model is covered by registering it.

Each model class declares a tiny configuration in `TEST_PARAMS`; each capability it declares
(`Estimator.capabilities()`) is exercised here.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from recotorch.data.interactions import Interactions
from recotorch.errors import UnsupportedError
from recotorch.models import MODELS, make_model
from recotorch.models.base import CAPABILITY_NAMES
from tests.conftest import planted_ratings

pytestmark = pytest.mark.usefixtures("one_thread")
NAMES = sorted(MODELS)


def test_every_registered_model_lives_where_the_registry_says():
    # the registry imports a model's module on first use: a wrong entry would hide the model
    import importlib
    import pkgutil

    import recotorch.models

    for info in pkgutil.walk_packages(recotorch.models.__path__, "recotorch.models."):
        importlib.import_module(info.name)  # every module that could register a model
    assert all(MODELS[name].__module__ == MODELS.home(name) for name in NAMES)
    assert sorted(MODELS) == NAMES  # nothing registered beyond the listed names
    assert all(MODELS[name].name == name for name in NAMES)


@pytest.fixture(scope="module")
def data() -> Interactions:
    train = planted_ratings(n_users=40, n_items=30, seed=1)
    users = train.users.ids.to_list()
    features = pl.DataFrame({"id": users, "age": [18 + (u * 7) % 40 for u in users],
                             "gender": ["MF"[u % 2] for u in users], "occupation": ["ab"[u % 3 % 2] for u in users]})
    return train.with_features(user_features=features)


@pytest.fixture(scope="module")
def fitted(data) -> dict:
    return {}


def _model(name: str, data: Interactions, cache: dict):
    if name not in cache:
        cache[name] = make_model(name, **MODELS[name].TEST_PARAMS).fit(data)
    return cache[name]


@pytest.mark.parametrize("name", NAMES)
def test_fit_and_score_shapes(name, data, fitted):
    model = _model(name, data, fitted)
    users = torch.arange(5)
    full = model.score(users)
    assert full.shape == (5, model.n_items) and torch.isfinite(full).all()
    pairs = model.score(users, torch.arange(5))
    torch.testing.assert_close(pairs.float(), full[users, torch.arange(5)].float(), atol=1e-4, rtol=1e-4)
    assert set(model.capabilities()) <= set(CAPABILITY_NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_recommend_contract(name, data, fitted):
    model = _model(name, data, fitted)
    users = list(model.users_.ids[:4])
    recs = model.recommend(users, k=5)
    for row, user in enumerate(users):
        idx = recs.item_idx[row]
        filled = idx[idx >= 0]
        seen = set(model.seen_.row(row).tolist())
        assert filled.numel() == min(5, model.n_items - len(seen))
        assert not seen & set(filled.tolist())
        assert len(set(filled.tolist())) == filled.numel()
        scores = recs.scores[row][: filled.numel()]
        assert torch.all(scores[:-1] >= scores[1:])
        assert model.users_.index([user])[0] == row
    with pytest.raises(KeyError):
        model.recommend(["no such user"], k=3)


@pytest.mark.parametrize("name", NAMES)
def test_similar_items_when_supported(name, data, fitted):
    model = _model(name, data, fitted)
    item = model.items_.ids[0]
    if not model.supports("similar_items"):
        with pytest.raises(NotImplementedError):
            model.similar_items([item], k=3)
        return
    recs = model.similar_items([item], k=3)
    got = recs.item_ids(0)
    assert item not in got and 0 < len(got) <= 3
    frame = recs.to_frame()
    assert frame.columns == ["item", "similar_item", "rank", "score"]
    assert frame["item"].to_list() == [item] * len(got) and frame["similar_item"].to_list() == got
    with pytest.raises(KeyError):
        model.similar_items(["no such item"], k=3)


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip_and_determinism(name, data, fitted, tmp_path):
    from recotorch.artifacts import load

    model = _model(name, data, fitted)
    back = load(model.save(tmp_path / name))
    assert type(back) is type(model) and back.get_params() == model.get_params()
    users = torch.arange(model.n_users)
    torch.testing.assert_close(back.score(users), model.score(users), atol=0, rtol=0)
    assert torch.equal(back.recommend(list(model.users_.ids[:5]), k=5).item_idx,
                       model.recommend(list(model.users_.ids[:5]), k=5).item_idx)
    state = torch.random.get_rng_state()
    again = make_model(name, **MODELS[name].TEST_PARAMS).fit(data)
    assert torch.equal(state, torch.random.get_rng_state())  # fitting leaves the global RNG alone
    torch.testing.assert_close(again.score(users), model.score(users), atol=0, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_ids_get_the_fallback_and_are_flagged(name, data, fitted):
    model = _model(name, data, fitted)
    user, item = model.users_.ids[0], model.items_.ids[0]
    pred = model.predict([user, -5, -5], [item, item, "nope"])
    assert pred.known.tolist() == [True, False, False] and pred.n_fallback == 2
    assert np.isfinite(pred.values).all()
    if model.task == "rating":  # both unknown: near the global mean
        assert abs(pred.values[2] - float(data.rating.mean())) < 1.0
    else:
        assert pred.values[2] == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_fold_in_when_supported(name, data, fitted):
    model = _model(name, data, fitted)
    idx = torch.tensor([[0, 1, 2], [3, 4, -1]])
    values = torch.tensor([[5.0, 4.0, 2.0], [1.0, 3.0, 0.0]])
    if not model.supports("fold_in"):
        with pytest.raises(NotImplementedError):
            model.fold_in(idx, values)
        return
    vectors = model.fold_in(idx, values)
    assert vectors.shape[0] == 2
    scores = model.score_new_users(vectors)
    assert scores.shape == (2, model.n_items) and torch.isfinite(scores).all()
    targets = torch.tensor([[0, 5, 7], [1, 2, 9]])
    torch.testing.assert_close(model.score_new_user_pairs(vectors, targets).float(),
                               scores.gather(1, targets).float(), atol=1e-4, rtol=1e-4)
    cold = model.cold_scores()
    assert cold.shape == (model.n_items,) and torch.isfinite(cold).all()


@pytest.mark.parametrize("name", NAMES)
def test_retrieval_vectors_rank_like_the_model(name, data, fitted):
    model = _model(name, data, fitted)
    if not model.supports("retrieval_vectors"):
        with pytest.raises(UnsupportedError):
            model.retrieval_vectors()
        return
    form = model.retrieval_vectors()
    for u in (0, 3):
        inner = form.items @ form.users[u]
        torch.testing.assert_close(form.model_scores(u, inner), model.score(torch.tensor([u]))[0].float(),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_update_when_supported(name, data, fitted, tmp_path):
    from recotorch.artifacts import load
    from recotorch.online.updates import update

    model = _model(name, data, fitted)
    frame = pl.DataFrame({"user": [5000, 5000, 1000], "item": ["i0", "new", "i3"], "rating": [4.0, 5.0, 2.0],
                          "timestamp": [10**6, 10**6 + 1, 10**6 + 2]})
    rows = Interactions.from_frame(frame, source="new")
    src = model.save(tmp_path / "m")
    if not model.supports("update"):
        with pytest.raises(NotImplementedError):
            update(src, rows, tmp_path / "m2")
        return
    child = load(update(src, rows, tmp_path / "m2"))
    assert child.n_users == model.n_users + 1 and child.n_items == model.n_items + 1
    assert torch.isfinite(child.score(torch.arange(child.n_users))).all()
    recs = child.recommend([5000], k=3)
    assert (recs.item_idx[0] >= 0).sum() == 3


@pytest.mark.parametrize("name", NAMES)
def test_lr_finder_when_trained_in_epochs(name, data):
    model = make_model(name, **MODELS[name].TEST_PARAMS)
    if model.supports("train_epochs"):
        found = model.find_lr(data, steps=5)
        assert found.suggestion > 0


@pytest.mark.parametrize("name", NAMES)
def test_explain_tensors_when_supported(name, data, fitted):
    model = _model(name, data, fitted)
    for capability, n in (("item_vectors", model.n_items), ("user_vectors", model.n_users),
                          ("item_biases", model.n_items), ("user_biases", model.n_users)):
        if model.supports(capability):
            assert getattr(model, capability)().shape[0] == n


@pytest.mark.parametrize("name", NAMES)
def test_literal_choices_are_declared_once_and_checked(name, data):
    from recotorch.errors import OptionError

    choices = MODELS[name].param_choices()
    for param, allowed in choices.items():
        with pytest.raises(OptionError, match=param):  # at construction (a Config), else at fit
            make_model(name, **{**MODELS[name].TEST_PARAMS, param: "no-such-choice"}).fit(data)
        assert MODELS[name]().get_params()[param] in allowed  # the default is one of the choices


@pytest.mark.parametrize("name", NAMES)
def test_declared_ranges_are_refused_at_construction(name):
    from recotorch.errors import OptionError
    from recotorch.models.config import describe

    for info in describe(name):
        if not info.range:
            continue
        bound = next(float(part.split()[1]) for part in info.range.split(" and "))
        below = bound - 1 if info.range.startswith((">=", ">")) else bound + 1
        value = int(below) if info.type.startswith("int") else below
        with pytest.raises(OptionError, match=info.name):
            make_model(name, **{**MODELS[name].TEST_PARAMS, info.name: value})


@pytest.mark.parametrize("name", NAMES)
def test_params_follow_scikit_learn_habits(name):
    from recotorch.errors import OptionError

    model = make_model(name, **MODELS[name].TEST_PARAMS)
    params = model.get_params(deep=False)
    twin = model.clone()
    assert type(twin) is type(model) and twin is not model and twin.get_params() == params
    assert not twin.is_fitted
    assert type(model)(**params).get_params() == params  # the params rebuild the model
    assert model.set_params() is model
    with pytest.raises(OptionError):
        model.set_params(no_such_option=1)
    assert model.get_params() == params  # a refused set_params changes nothing
    assert repr(model).startswith(type(model).__name__ + "(")


@pytest.mark.parametrize("name", NAMES)
def test_every_training_field_is_reachable(name):
    from dataclasses import fields

    from recotorch.train.config import TrainConfig

    model = make_model(name, **MODELS[name].TEST_PARAMS)
    if not model.supports("train_epochs"):
        return
    assert {f.name for f in fields(TrainConfig)} <= set(model.get_params())


@pytest.mark.parametrize("name", NAMES)
def test_training_options_reach_the_trainer(name):
    model = make_model(name, **MODELS[name].TEST_PARAMS)
    if not model.supports("train_epochs"):
        return
    given = {"grad_accum": 2, "schedule": "constant", "pct_start": 0.5, "patience": 3, "seed": 7}
    cfg = make_model(name, **{**MODELS[name].TEST_PARAMS, **given}).train_config()
    assert {k: getattr(cfg, k) for k in given} == given


def test_every_registered_model_is_importable_from_recotorch():
    import recotorch

    missing = sorted(name for name, cls in MODELS.items() if getattr(recotorch, cls.__name__, None) is not cls)
    assert not missing, f"not exported by recotorch: {missing}"
