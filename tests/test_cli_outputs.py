"""Tables people can use: `--user` on the terminal, `--out -` on stdout, `--format`, fallback rows marked,
plus the CLI basics (-v/-q, training progress off a terminal, shell completion, serve's access log).

Commands run in-process through `recotorch.cli.main` (as tests/test_cli_errors.py does); `--out -`,
completion and the access log also run as real processes.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.helpers.cli import cli_fixture

HANG_GUARD = 600  # seconds: only against a hung process


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "recotorch", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=HANG_GUARD)


@pytest.fixture()
def cli(capsys, monkeypatch):
    """`cli(*args)` runs `recotorch ARGS` in this process: (exit code, stdout, stderr)."""
    yield from cli_fixture(capsys, monkeypatch)


def purchases(path: Path, n_users: int = 40, n_items: int = 25, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    weights = np.linspace(2, 1, n_items)
    rows = {(f"u{u:02d}", f"sku-{i:02d}") for u in range(n_users)
            for i in rng.choice(n_items, 6, replace=False, p=weights / weights.sum())}
    pl.DataFrame(sorted(rows), schema={"user": pl.Utf8, "item": pl.Utf8}, orient="row").write_csv(path)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """EASE on a small purchase log with a catalogue of names (some "X, The") and aisles."""
    from recotorch.artifacts import save
    from recotorch.data.catalogue import attach, read_catalogue
    from recotorch.data.readers import read_interactions
    from recotorch.models.ease import EASE

    root = tmp_path_factory.mktemp("outputs")
    data = read_interactions(purchases(root / "log.csv"), rating=None, timestamp=None)
    (root / "items.csv").write_text("id,name,aisle\n" + "".join(
        f"sku-{i:02d},\"{'Basket ' + str(i) + ', The' if i % 5 == 0 else 'Product ' + str(i)}\","
        f"{['Dairy', 'Bakery'][i % 2]}\n" for i in range(25)))
    fitted = EASE(reg=10).fit(data)
    fitted.item_features_ = attach(None, read_catalogue(root / "items.csv"), fitted.items_).features
    save(fitted, root / "ease")
    return root / "ease"


def test_user_prints_a_table_with_names(cli, model, tmp_path):
    code, out, err = cli("recommend", model, "--user", "u01", "--user", "u02,u03", "--k", "4", cwd=tmp_path)
    assert code == 0, err
    assert "Top 4 for 3 users" in out and "name" in out and "score" in out
    assert out.count("u01") == 4 and out.count("u03") == 4
    assert "Product" in out or "Basket" in out
    assert "Basket 0, The" not in out  # names in reading order
    assert not list(tmp_path.iterdir())  # nothing written
    code, out, err = cli("recommend", model, "--user", "nobody", cwd=tmp_path)
    assert code == 2 and "--user" in err and "nobody" in err and "--fallback popular" in err


def test_recommend_needs_out_without_user(cli, model, tmp_path):
    code, _, err = cli("recommend", model, cwd=tmp_path)
    assert code == 2 and "--out" in err and "--user" in err


def test_out_dash_writes_csv_to_stdout_in_a_real_process(model, tmp_path):
    proc = run_cli("recommend", str(model), "--k", "3", "--out", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "-").exists() and not list(tmp_path.iterdir())
    frame = pl.read_csv(io.StringIO(proc.stdout))
    assert frame.columns == ["user", "item", "rank", "score", "name"]
    assert frame.height == 40 * 3 and frame["rank"].to_list()[:3] == [1, 2, 3]
    assert "standard output" in proc.stderr  # the status line stays off the table
    file = run_cli("recommend", str(model), "--k", "3", "--out", str(tmp_path / "recs.csv"))
    assert file.returncode == 0, file.stderr
    assert pl.read_csv(tmp_path / "recs.csv").equals(frame)
    proc = run_cli("predict", str(model), str(tmp_path / "recs.csv"), "--out", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    pred = pl.read_csv(io.StringIO(proc.stdout))
    assert pred.columns == ["user", "item", "prediction", "known"] and pred.height == 120 and pred["known"].all()


def test_formats_from_the_flag_or_the_suffix(cli, model, tmp_path):
    assert cli("recommend", model, "--k", "2", "--out", tmp_path / "r.parquet", cwd=tmp_path)[0] == 0
    parquet = pl.read_parquet(tmp_path / "r.parquet")
    assert parquet.height == 80 and parquet.columns[:4] == ["user", "item", "rank", "score"]
    assert cli("recommend", model, "--k", "2", "--out", tmp_path / "r.jsonl", cwd=tmp_path)[0] == 0
    assert_frame_equal(pl.read_ndjson(tmp_path / "r.jsonl"), parquet, check_dtypes=False)
    assert cli("recommend", model, "--k", "2", "--out", tmp_path / "r.data", "--format", "csv", cwd=tmp_path)[0] == 0
    assert_frame_equal(pl.read_csv(tmp_path / "r.data"), parquet, check_dtypes=False)
    code, out, err = cli("similar", model, "sku-01", "--k", "3", "--out", "-", "--format", "jsonl", cwd=tmp_path)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["rank"] for r in rows] == [1, 2, 3] and set(rows[0]) == {"rank", "item", "score", "name"}
    assert all(r["item"] != "sku-01" for r in rows)
    before = sorted(p.name for p in tmp_path.iterdir())
    for args, flag in [(("--out", tmp_path / "r.txt"), "--format"),
                       (("--out", tmp_path / "x.csv", "--format", "parquet"), "--format"),
                       (("--out", "-", "--format", "parquet"), "--format"),
                       (("--user", "u01", "--format", "csv"), "--format"),
                       (("--out", tmp_path / "r.csv", "--format", "xml"), "--format"),
                       (("--out", tmp_path / "r.parquet"), "already exists")]:
        code, _, err = cli("recommend", model, *args, cwd=tmp_path)
        assert code == 2 and flag in err and "Traceback" not in err, (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written by a refused command
    code, _, err = cli("recommend", model, "--k", "2", "--out", tmp_path / "r.parquet", "--overwrite", cwd=tmp_path)
    assert code == 0, err
    users = tmp_path / "users.csv"
    users.write_text("user\nu01\n")
    code, _, err = cli("recommend", model, "--users", users, "--out", users, "--overwrite", cwd=tmp_path)
    assert code == 2 and "input" in err and users.read_text() == "user\nu01\n"  # never an input, even with --overwrite


def test_fallback_rows_are_marked_and_never_scored(cli, model, tmp_path):
    users = tmp_path / "users.csv"
    users.write_text("user\nu01\nstranger\n")
    code, _, err = cli("recommend", model, "--users", users, "--k", "3", "--fallback", "popular",
                       "--out", tmp_path / "r.csv", cwd=tmp_path)
    assert code == 0, err
    assert "1 unknown user" in err
    recs = pl.read_csv(tmp_path / "r.csv")
    assert recs.columns == ["user", "item", "rank", "score", "name", "source", "popularity"]
    model_rows, popular = recs.filter(pl.col("source") == "model"), recs.filter(pl.col("source") == "popular")
    assert model_rows["user"].unique().to_list() == ["u01"] and popular["user"].unique().to_list() == ["stranger"]
    assert popular["score"].null_count() == 3 and model_rows["score"].null_count() == 0
    assert popular["popularity"].min() >= 1 and model_rows["popularity"].null_count() == 3
    assert popular["popularity"].to_list() == sorted(popular["popularity"].to_list(), reverse=True)
    log = pl.read_csv(Path(model).parent / "log.csv")
    counts = dict(log.group_by("item").len().iter_rows())
    assert popular["popularity"].to_list() == [counts[i] for i in popular["item"]]
    # without --fallback popular the table keeps its plain columns
    code, out, _ = cli("recommend", model, "--user", "u01", "--k", "1", "--out", "-", cwd=tmp_path)
    assert code == 0 and out.splitlines()[0] == "user,item,rank,score,name"


def test_quiet_and_verbose_set_the_recotorch_logger(cli, model, tmp_path):
    from recotorch.cli import verbosity

    log = logging.getLogger("recotorch.test")
    assert cli("similar", model, "sku-01", "--k", "1", cwd=tmp_path)[0] == 0
    assert logging.getLogger("recotorch").getEffectiveLevel() == logging.INFO  # INFO shown by default
    assert verbosity.progress_wanted()
    assert cli("-q", "similar", model, "sku-01", "--k", "1", cwd=tmp_path)[0] == 0
    assert logging.getLogger("recotorch").level == logging.WARNING and not verbosity.progress_wanted()
    assert cli("-v", "similar", model, "sku-01", "--k", "1", cwd=tmp_path)[0] == 0
    assert log.isEnabledFor(logging.DEBUG)
    code, _, err = cli("-v", "-q", "similar", model, "sku-01", cwd=tmp_path)
    assert code == 2 and "--quiet" in err


def test_training_progress_names_the_model_one_line_per_epoch(cli, tmp_path):
    data = tmp_path / "ratings.csv"
    rng = np.random.default_rng(0)
    pl.DataFrame({"user": rng.integers(0, 30, 400), "item": rng.integers(0, 20, 400),
                  "rating": rng.integers(1, 6, 400)}).unique(["user", "item"]).write_csv(data)
    code, _, err = cli("fit", data, "--model", "mf", "--epochs", "3", "--out", tmp_path / "mf", cwd=tmp_path)
    assert code == 0, err
    lines = [line for line in err.splitlines() if " epoch " in line]
    assert [line.split(":")[0] for line in lines] == ["mf epoch 1/3", "mf epoch 2/3", "mf epoch 3/3"], err
    assert all("loss=" in line for line in lines)
    code, _, err = cli("-q", "fit", data, "--model", "mf", "--epochs", "2", "--out", tmp_path / "mf", cwd=tmp_path)
    assert code == 0 and " epoch " not in err


def test_shell_completion_script_and_candidates(tmp_path):
    script = Path(sys.executable).parent / "recotorch"  # the installed entry point: completion keys on its name
    if not script.exists():
        pytest.skip("no installed recotorch script beside the interpreter")
    proc = subprocess.run([str(script), "--show-completion", "bash"], capture_output=True, text=True,
                          timeout=HANG_GUARD)
    assert proc.returncode == 0 and "_recotorch_completion" in proc.stdout and "complete" in proc.stdout
    env = {**os.environ, "_RECOTORCH_COMPLETE": "complete_bash", "COMP_WORDS": "recotorch reco", "COMP_CWORD": "1"}
    proc = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=HANG_GUARD)
    assert proc.stdout.split() == ["recommend"], proc


def test_access_log_options(tmp_path):
    from recotorch.cli.serve import _log_config
    from recotorch.errors import OptionError

    assert _log_config("warning", "off", tmp_path)["loggers"]["uvicorn.access"]["level"] == "INFO"
    file = _log_config("info", str(tmp_path / "access.log"), tmp_path / "model")
    assert file["handlers"]["access"]["filename"] == str(tmp_path / "access.log")
    for level, access in (("loud", "off"), ("warning", str(tmp_path)), ("warning", str(tmp_path / "no" / "a.log"))):
        with pytest.raises(OptionError):
            _log_config(level, access, tmp_path / "model")
    with pytest.raises(OptionError, match="inside the model directory"):
        _log_config("warning", str(tmp_path / "access.log"), tmp_path)


@pytest.mark.slow
def test_serve_writes_an_access_log_file(model, tmp_path):
    from tests.helpers.server import ServerProcess

    log = tmp_path / "access.log"
    log.write_text("earlier line\n")
    with ServerProcess(model, "--store", "none", "--access-log", str(log)) as server, \
            urllib.request.urlopen(server.url + "/items?q=basket", timeout=30) as response:
        assert response.status == 200
    text = log.read_text()
    assert text.startswith("earlier line\n")  # appended, never overwritten
    assert "GET /items?q=basket" in text and "200" in text


def test_user_ids_keep_their_text(cli, tmp_path):
    """'007' is a string id (leading zero), never the integer 7; '42' finds the integer 42."""
    log = tmp_path / "log.csv"
    log.write_text("user,item\n007,a\n007,b\n7,c\n008,a\n008,c\n")
    assert cli("fit", log, "--model", "pop", "--out", tmp_path / "pop", cwd=tmp_path)[0] == 0
    code, out, err = cli("recommend", tmp_path / "pop", "--user", "007", "--k", "2", "--out", "-", cwd=tmp_path)
    assert code == 0, err
    assert pl.read_csv(io.StringIO(out), schema_overrides={"user": pl.Utf8})["item"].to_list() == ["c"]
    log.write_text("user,item\n42,a\n42,b\n43,c\n")
    assert cli("fit", log, "--model", "pop", "--out", tmp_path / "pop2", cwd=tmp_path)[0] == 0
    code, out, err = cli("recommend", tmp_path / "pop2", "--user", "42", "--k", "1", "--out", "-", cwd=tmp_path)
    assert code == 0 and out.splitlines()[1].startswith("42,c,1,"), (out, err)
