"""Typed hyper-parameters: one declaration per model drives validation, params, --set parsing and describe."""

from __future__ import annotations

import inspect

import pytest

import recotorch.models as rt
from recotorch.errors import OptionError
from recotorch.models import MODELS, make_model
from recotorch.models.config import UnknownOptionError, describe, options_help, parse_assignments, search_space
from recotorch.train.config import TrainConfig, Tune


def test_bad_values_are_refused_at_construction_naming_the_keyword():
    with pytest.raises(OptionError, match=r"^dim: must be >= 1, got -4$"):
        rt.MatrixFactorization(dim=-4)
    with pytest.raises(OptionError, match="lr: must be > 0"):
        rt.MatrixFactorization(lr=0.0)
    with pytest.raises(OptionError, match="reg: must be >= 0"):
        rt.ImplicitALS(reg=-1.0)
    with pytest.raises(OptionError, match="half_life: must be > 0"):
        rt.ItemKNN(half_life=0.0)
    with pytest.raises(OptionError, match="dim: must be int"):
        rt.MatrixFactorization(dim="50")
    with pytest.raises(OptionError, match="epochs: must be int"):
        rt.MatrixFactorization(epochs=True)  # a bool is not a count
    with pytest.raises(OptionError, match="sampler: 'in_batch' needs loss='softmax'"):
        rt.RankingMF(loss="bpr", sampler="in_batch")
    with pytest.raises(OptionError, match="layers"):
        rt.NeuralCF(layers=(0,))
    with pytest.raises(OptionError, match="base: unknown base model"):
        rt.Bagged(base="nosuch")


def test_unknown_keywords_suggest_the_closest_name():
    with pytest.raises(UnknownOptionError, match="did you mean 'dim'"):
        rt.MatrixFactorization(dimm=4)
    with pytest.raises(TypeError):  # what Python raises for an unknown keyword, still
        rt.EASE(regg=1.0)
    with pytest.raises(OptionError, match="did you mean 'epochs'"):
        make_model("mf", epoch=3)
    with pytest.raises(OptionError, match="unknown model 'mff'; did you mean 'mf'"):
        make_model("mff")


def test_constructors_keep_their_keywords_and_defaults():
    model = rt.MatrixFactorization(dim=50, epochs=5)
    assert model.dim == 50 and model.epochs == 5 and model.rating_range == "auto"
    sig = inspect.signature(rt.MatrixFactorization.__init__)
    assert sig.parameters["dim"].default == 50 and sig.parameters["optimizer"].default == "rowwise_adagrad"
    assert rt.NeuralCF().epochs == 8 and rt.BPRMF().epochs == 20 and rt.BPRMF().loss == "bpr"
    assert "loss" not in rt.BPRMF().get_params()
    assert rt.GlobalMean().get_params() == {}
    assert rt.MatrixFactorization.fast(dim=64).optimizer == "rowwise_adagrad"
    assert rt.NeuralCF(layers=[16, 8]).layers == (16, 8)


def test_repr_shows_what_differs_from_the_defaults():
    assert repr(rt.MatrixFactorization()) == "MatrixFactorization()"
    assert repr(rt.MatrixFactorization(dim=8, lr=0.05)) == "MatrixFactorization(dim=8, lr=0.05)"


def test_set_params_checks_and_returns_self():
    model = rt.EASE()
    assert model.set_params(reg=400.0, half_life=0.2) is model
    assert model.reg == 400.0 and model.half_life == 0.2
    with pytest.raises(OptionError, match="reg"):
        model.set_params(reg=-1.0)
    assert model.reg == 400.0


def test_attributes_set_by_hand_are_checked_at_fit():
    from tests.conftest import planted_ratings

    model = rt.MatrixFactorization(dim=4, epochs=1)
    model.dim = 0
    with pytest.raises(OptionError, match="dim"):
        model.fit(planted_ratings(n_users=10, n_items=8, seed=0))


def test_parse_assignments_converts_to_the_declared_types():
    assert parse_assignments("ease", ["reg=400", "half_life=0.2"]) == {"reg": 400.0, "half_life": 0.2}
    got = parse_assignments("mf", ["dim=8", "rating_range=1,5", "patience=none", "amp=true", "optimizer=sparse_adam"])
    assert got == {"dim": 8, "rating_range": (1.0, 5.0), "patience": None, "amp": True, "optimizer": "sparse_adam"}
    assert parse_assignments("mf", ["rating_range=auto"]) == {"rating_range": "auto"}
    assert parse_assignments("hybrid", ["item_features=genres,year", "user_features="]) == \
        {"item_features": ("genres", "year"), "user_features": ()}
    assert parse_assignments("ncf", ["layers=64,32"]) == {"layers": (64, 32)}
    assert parse_assignments("bagged", ['params={"init_std": 0.05}']) == {"params": {"init_std": 0.05}}
    model = make_model("ease", **parse_assignments("ease", ["reg=400"]))
    assert model.reg == 400.0


@pytest.mark.parametrize(("assignments", "pattern"), [
    (["regg=400"], r"--set regg: .*did you mean 'reg'"),
    (["reg"], r"--set: expected KEY=VALUE"),
    (["reg=abc"], r"--set reg: cannot read 'abc' as float"),
    (["reg=-5"], r"--set reg: must be > 0"),
    (["dtype=float16"], r"--set dtype: cannot read 'float16'"),
    (["reg=1", "reg=2"], r"--set reg: given twice"),
])
def test_parse_assignments_refuses_with_one_line(assignments, pattern):
    with pytest.raises(OptionError, match=pattern):
        parse_assignments("ease", assignments)


def test_parse_assignments_of_a_bool_and_an_int():
    with pytest.raises(OptionError, match="--set amp: cannot read 'maybe'"):
        parse_assignments("mf", ["amp=maybe"])
    with pytest.raises(OptionError, match=r"--set dim: cannot read '4\.5' as int"):
        parse_assignments("mf", ["dim=4.5"])


def test_describe_lists_fields_defaults_choices_help_and_tuner_hints():
    fields = {f.name: f for f in describe("mf")}
    assert fields["dim"].default == 50 and fields["dim"].range == ">= 1" and fields["dim"].help
    assert fields["optimizer"].choices == ("adamw", "sparse_adam", "rowwise_adagrad") and fields["optimizer"].training
    assert not fields["dim"].training
    assert isinstance(fields["lr"].tune, Tune) and fields["lr"].tune.log
    assert fields["lr"].line().startswith("lr=0.1  [float]  peak learning rate")
    assert fields["dim"].to_dict()["tune"] == {"low": 8, "high": 256, "log": True, "kind": "int"}
    space = search_space("als")
    assert space["reg"].log and space["solver"] == ("cg", "cholesky")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_describes_every_parameter(name):
    listed = [f.name for f in describe(name)]
    assert listed == list(MODELS[name]().get_params())
    declared = any("Config" in vars(k) for k in MODELS[name].__mro__)
    if declared:  # a declared Config documents each field
        assert all(f.help for f in describe(name)), [f.name for f in describe(name) if not f.help]


def test_train_config_checks_its_fields():
    with pytest.raises(OptionError, match="batch_size: must be >= 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="schedule: must be 'one_cycle' or 'constant'"):
        TrainConfig(schedule="cosine")
    with pytest.raises(OptionError, match="pct_start"):
        TrainConfig(pct_start=1.0)
    assert TrainConfig().to_dict()["epochs"] == 5


def test_saved_params_without_later_fields_still_load(tmp_path):
    """A model.json written before a model gained fields (e.g. optimizer for NCF) builds with the defaults."""
    params = rt.NeuralCF().get_params()
    for later in ("optimizer", "amp", "shuffle"):
        params.pop(later)
    model = MODELS["ncf"](**params)
    assert model.optimizer == "adamw" and model.get_params()["layers"] == (128,)


def test_lists_read_back_from_json_become_the_declared_tuples(tmp_path):
    from recotorch.artifacts import load
    from tests.conftest import planted_ratings

    model = rt.MatrixFactorization(dim=3, epochs=1, rating_range=[1.0, 5.0])
    assert model.rating_range == (1.0, 5.0)
    model.fit(planted_ratings(n_users=12, n_items=8, seed=0))
    back = load(model.save(tmp_path / "mf"))
    assert back.get_params() == model.get_params() and back.rating_range == (1.0, 5.0)


def test_search_space_leaves_the_training_loop_settings_alone():
    space = search_space("ranking_mf")
    assert space["loss"] == ("bpr", "bce", "softmax") and space["lr"].log
    assert not {"optimizer", "schedule", "shuffle", "device", "progress"} & set(space)


def test_options_help_lists_model_then_training_options():
    text = options_help("ease").splitlines()
    assert text[0] == "ease options (--set KEY=VALUE):"
    assert any(line.startswith("  reg=100.0  [float]") for line in text)
    assert "training options:" not in text
    mf = options_help("mf")
    assert mf.index("  dim=50") < mf.index("training options:") < mf.index("  lr=0.1")
