"""Start-up: `import recotorch`, `recotorch --version`/`--help` and a small `fit` import only what they use.

Each check runs a fresh Python process and reads its `sys.modules` at the end (no timing).
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch._dynamo", "fastapi", "uvicorn", "faiss", "matplotlib", "optuna")
REPORT = "import json, sys; print(json.dumps(sorted(m for m in {mods!r} if m in sys.modules)))"


def _imported(code: str, mods: tuple[str, ...], *args: str) -> list[str]:
    """Run `code` in a fresh interpreter, then list which of `mods` it had imported."""
    script = f"{code}\n{REPORT.format(mods=mods)}"
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cli(*argv: str) -> str:
    """Code running `recotorch ARGV` through the entry point, keeping the process alive afterwards."""
    return ("import sys\nfrom recotorch.cli import main\n"
            f"sys.argv = ['recotorch', *{list(argv)!r}]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n")


def test_the_check_sees_an_import():
    assert _imported("import matplotlib", HEAVY) == ["matplotlib"]


@pytest.mark.parametrize("code", ["import recotorch", "import recotorch.cli"])
def test_importing_recotorch_and_its_cli_is_light(code):
    assert _imported(code, ("torch", *HEAVY)) == []


@pytest.mark.parametrize("argv", [("--version",), ("--help",), ("fit", "--help")])
def test_version_and_help_import_nothing_heavy(argv):
    # the verb list needs no verb's module; `fit --help` needs the fit verb's (and so torch), nothing more
    allowed_torch = argv[0] == "fit"
    found = _imported(_cli(*argv), ("torch", *HEAVY))
    assert found == (["torch"] if allowed_torch else [])


def test_a_small_fit_imports_neither_dynamo_nor_serving_nor_plotting(tmp_path: Path):
    data = tmp_path / "r.csv"
    rows = [f"{u},{i},{(u * 7 + i) % 5 + 1}" for u in range(30) for i in range(20) if (u + i) % 3]
    data.write_text("user,item,rating\n" + "\n".join(rows) + "\n")
    found = _imported(_cli("fit", str(data), "--fast", "--epochs", "2", "--out", str(tmp_path / "m")), HEAVY)
    assert found == []
    assert (tmp_path / "m").is_dir()


def test_fitting_one_model_imports_that_model_alone(tmp_path: Path):
    data = tmp_path / "r.csv"
    data.write_text("user,item,rating\n" + "\n".join(f"{u},{i},{(u + i) % 5 + 1}" for u in range(20)
                                                    for i in range(10)) + "\n")
    others = ("recotorch.models.als", "recotorch.models.ease", "recotorch.models.sequential",
              "recotorch.models.hybrid", "recotorch.models.mf")
    found = _imported(_cli("fit", str(data), "--model", "bias", "--out", str(tmp_path / "m")), others)
    assert found == []
    found = _imported(_cli("fit", str(data), "--model", "mf", "--epochs", "1", "--out", str(tmp_path / "m2")), others)
    assert found == ["recotorch.models.mf"]


def test_the_cli_process_skips_the_last_garbage_collection(tmp_path: Path):
    # exit handlers run last-registered first: this one, registered before main, runs after main's
    code = ("import atexit, gc\n"
            "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n"
            + _cli("--version"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1] == "frozen at exit: True"
    assert proc.stdout.startswith("recotorch ")


def test_the_cli_leaves_the_collector_alone_while_it_runs(capsys, monkeypatch):
    import gc

    from tests.helpers.cli import run_in_process

    before = gc.get_freeze_count()
    assert run_in_process(["--version"], capsys, monkeypatch)[0] == 0
    assert gc.get_freeze_count() == before  # the in-process callers' objects stay collectable


def test_model_classes_load_on_first_use():
    found = _imported("import recotorch as rt\nassert rt.MatrixFactorization.__name__ == 'MatrixFactorization'\n"
                      "assert rt.load.__module__ == 'recotorch.artifacts'", ("torch", "recotorch.models"))
    assert found == ["recotorch.models", "torch"]


def test_an_unknown_name_is_an_attribute_error():
    import recotorch

    with pytest.raises(AttributeError, match="no attribute 'not_a_model'"):
        recotorch.not_a_model  # noqa: B018


def _fit_and_save(module: str, estimator: str, columns: str, path: Path) -> str:
    """Code fitting `estimator` (a class of `module`) on a tiny frame of `columns` and saving it to `path`."""
    return (f"import polars as pl\nfrom {module} import {estimator.split('(')[0]}\n"
            "from recotorch.data.interactions import Interactions\n"
            f"data = Interactions.from_frame(pl.DataFrame({columns}))\n"
            f"est = {estimator}\nest.prepare_fit()\nest.fit(data).save({str(path)!r})\n")


def test_save_works_without_importing_artifacts_first(tmp_path: Path):
    code = _fit_and_save("recotorch.models.baselines", "GlobalMean()",
                         "{'user': [1, 2], 'item': [3, 4], 'rating': [4.0, 2.0]}", tmp_path / "m")
    assert _imported(code, ("recotorch.artifacts",)) == ["recotorch.artifacts"]
    assert (tmp_path / "m").is_dir()


def test_the_verb_list_shows_each_verbs_own_help():
    import click
    import typer

    from recotorch.cli import VERBS, app

    group = typer.main.get_command(app)
    listed = {name: group.commands[name].help for name in VERBS}  # read from the source, not imported
    ctx = click.Context(group)
    for name in VERBS:
        real = group.get_command(ctx, name)  # now imported
        assert (real.help or "").strip() == listed[name].strip(), name
        assert listed[name], f"{name} has no help text"


def test_deferred_dynamo_puts_torchs_behaviour_back():
    import torch

    from recotorch.train import lazy_dynamo

    raw = torch.optim.Optimizer.zero_grad.__wrapped__
    before = getattr(raw, "__dynamo_disable", None)
    with lazy_dynamo.deferred(), lazy_dynamo.deferred():
        inside = getattr(raw, "__dynamo_disable", None)
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
        opt.zero_grad()
    assert inside is not None and getattr(raw, "__dynamo_disable", None) is before
    assert opt.state_dict()["param_groups"][0]["lr"] == 0.1


def test_loading_a_fitted_model_compiles_no_kernel(tmp_path: Path):
    # ALS warms its Numba kernels for a fit (`prepare_fit`), never for recommending from a saved model
    model = tmp_path / "als"
    fit = _fit_and_save("recotorch.models.als", "ImplicitALS(dim=4, iterations=2)",
                        "{'user': [1, 1, 2, 3], 'item': [1, 2, 2, 3]}", model)
    assert _imported(fit, ("numba",)) == ["numba"]
    found = _imported(_cli("recommend", str(model), "--user", "1", "--k", "2"), ("numba",))
    assert found == []


@pytest.mark.parametrize(("argv", "frozen"), [(("--version",), False), (("fit", "--help"), True)])
def test_the_cli_process_freezes_what_a_verb_imported_and_collects_again(argv, frozen):
    # printed right after main returns, before the exit handler's freeze; the verb's own work still collects
    code = _cli(*argv) + "print('after main:', gc.get_freeze_count() > 0, gc.isenabled())\n"
    proc = subprocess.run([sys.executable, "-c", "import gc\n" + code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1] == f"after main: {frozen} True"


def test_an_in_process_verb_freezes_nothing(tmp_path: Path):
    from typer.testing import CliRunner

    from recotorch.cli import app

    before = gc.get_freeze_count()
    result = CliRunner().invoke(app, ["split", "--help"])
    assert result.exit_code == 0, result.output
    assert gc.get_freeze_count() == before and gc.isenabled()
