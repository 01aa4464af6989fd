"""The search's final choice: the best trial, unless a family's defaults score within the noise margin."""

from __future__ import annotations

import pytest

optuna = pytest.importorskip("optuna")

from recotorch.tune.search import TIE, _chosen  # noqa: E402


def study_of(direction: str, trials: list[tuple[float, str | None]]):
    """An in-memory study of finished trials (value, family whose defaults it ran, or None for a sampled one)."""
    study = optuna.create_study(direction=direction)
    for value, defaults_of in trials:
        attrs = {"model": defaults_of or "blend"} | ({"defaults_of": defaults_of} if defaults_of else {})
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs=attrs))
    return study


def test_defaults_within_the_margin_are_kept_over_a_slightly_better_tuned_trial():
    study = study_of("minimize", [(0.8988, "mf"), (0.8896, "blend"), (0.8893, None)])
    assert _chosen(study).number == 1


def test_a_tuned_trial_clearly_better_than_every_default_is_chosen():
    margin = 0.8896 * TIE
    study = study_of("minimize", [(0.8896, "blend"), (0.8896 - 2 * margin, None)])
    assert _chosen(study).number == 1


def test_the_margin_follows_the_direction_of_the_metric():
    study = study_of("maximize", [(0.2000, "ease"), (0.20015, None), (0.1, "pop")])
    assert _chosen(study).number == 0
    study = study_of("maximize", [(0.2000, "ease"), (0.2100, None)])
    assert _chosen(study).number == 1


def test_with_no_defaults_trial_the_best_is_chosen():
    study = study_of("minimize", [(0.95, None), (0.90, None)])
    assert _chosen(study).number == 1


def runner_of(study, direction: str):
    """A search runner over `study` with only what its scheduling reads (no data, no folder)."""
    from types import SimpleNamespace

    from recotorch.tune.search import _Runner

    runner = object.__new__(_Runner)
    runner.study, runner.optuna = study, optuna
    runner.protocol = SimpleNamespace(direction=direction)
    return runner


def test_a_family_is_stale_after_eight_sampled_trials_without_improving():
    from recotorch.tune.search import STALE

    trials = [(0.18, "als")] + [(0.17, None)] * (STALE - 1)
    study = optuna.create_study(direction="maximize")
    for value, defaults_of in trials:
        attrs = {"model": "als"} | ({"defaults_of": defaults_of} if defaults_of else {})
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs=attrs))
    runner = runner_of(study, "maximize")
    assert not runner.stale("als")
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, user_attrs={"model": "als"}))
    assert runner.stale("als")  # a pruned sampled trial did not improve it either
    study.add_trial(optuna.trial.create_trial(value=0.19, user_attrs={"model": "als"}))
    assert not runner.stale("als")
    assert not runner.stale("ease")  # a family with no trials is not stale


def test_a_combination_the_model_refuses_is_pruned_before_anything_runs():
    from types import SimpleNamespace

    study = optuna.create_study(direction="maximize")
    runner = runner_of(study, "maximize")
    lines: list[str] = []
    runner.st = SimpleNamespace(seed=0, device=None, trials=None, echo=lines.append)
    runner.searchable, runner.timestamps, runner.deadline = ["ranking_mf"], False, None
    runner.protocol = None  # never reached: the refusal comes before any fit or score
    study.enqueue_trial({"model": "ranking_mf", "ranking_mf.loss": "bpr", "ranking_mf.sampler": "in_batch"})
    trial = study.ask()
    runner.run(trial)
    (done,) = study.get_trials(deepcopy=False)
    assert done.state == optuna.trial.TrialState.PRUNED
    assert "not a valid combination" in done.user_attrs["note"] and "in_batch" in done.user_attrs["note"]
    assert "not a valid combination" in lines[-1]
