"""The tuner (`recotorch tune`, `fit --model auto`): a search on a small sample of ml-100k finds, records,
refits and reports; two worker processes share one study exactly; --resume continues it; the same seed
and trial count give the same search; nothing but the training file is read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from recotorch.artifacts import load
from recotorch.cli import app, boundary
from recotorch.tune.record import jsonable
from recotorch.tune.search import TIE

pytest.importorskip("optuna")
pytestmark = pytest.mark.usefixtures("one_thread")

HANG_GUARD = 300  # seconds: a stuck run fails instead of hanging the suite (no timing is asserted)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def sample(ml100k_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ratings of ml-100k's first 60 users (about 6,000 rows), with timestamps, as CSV."""
    frame = pl.read_csv(ml100k_dir / "u.data", separator="\t", has_header=False,
                        new_columns=["user", "item", "rating", "timestamp"])
    path = tmp_path_factory.mktemp("tune") / "train.csv"
    frame.filter(pl.col("user") <= 60).write_csv(path)
    return path


def cli(*args: str) -> tuple[int, str, str]:
    """The CLI in this process (the import is paid once), behind the same error boundary as `recotorch`."""
    result = CliRunner().invoke(app, list(args))
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        if not boundary.is_user_error(exc):
            raise exc
        return 2, result.stdout, result.stderr + f"error: {boundary.message_of(exc)}\n"
    return result.exit_code, result.stdout, result.stderr


def journal_trials(folder: Path) -> list:
    import optuna

    from recotorch.tune.storage import counted

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / "study.journal")))
    return counted(optuna.load_study(study_name="recotorch", storage=storage))


def test_search_refits_the_best_and_writes_the_record(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "search"
    code, stdout, stderr = cli("tune", str(sample), "--task", "rating", "--trials", "5", "--models", "bias,mf",
                               "--out", str(out))
    assert code == 0, stderr
    rec = json.loads((out / "search.json").read_text())
    assert rec["status"] == "done" and rec["task"] == "rating" and rec["metric"] == "RMSE"
    assert rec["candidates"] == ["bias", "mf"]
    assert sum(rec["trials"].values()) == 5
    best = rec["best"]
    model = load(out / "model")  # a normal model directory
    assert model.name == best["model"]
    saved = jsonable({k: model.get_params()[k] for k in best["params"]})
    assert saved == best["params"]  # the chosen settings, saved
    assert f"chosen {best['model']}" in stdout  # and printed
    board = pl.read_csv(out / "leaderboard.csv")
    assert board.height == 5 and {"model", "settings", "RMSE", "fit_s", "peak_mb"} <= set(board.columns)
    done = board.filter(pl.col("state") == "complete")
    assert best["value"] in done["RMSE"].to_list()
    assert best["value"] <= done["RMSE"].min() * (1 + TIE)  # the best, or defaults within the noise margin
    assert (out / "history.png").stat().st_size > 0 and (out / "families.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "Leaderboard" in report and best["model"] in report and "history.png" in report
    assert "[1/5] bias" in stderr and "best" in stderr  # progress with the best so far


def test_same_seed_and_trials_give_the_same_search(sample: Path, tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        code, _, stderr = cli("tune", str(sample), "--task", "ranking", "--trials", "7", "--seed", "3",
                              "--models", "pop,itemknn,ease", "--out", str(tmp_path / name))
        assert code == 0, stderr
        rec = json.loads((tmp_path / name / "search.json").read_text())
        board = pl.read_csv(tmp_path / name / "leaderboard.csv").sort("trial")
        runs.append((rec["best"], board.select("model", "settings", "state", "NDCG@20").rows()))
    assert runs[0] == runs[1]
    assert len({r[1] for r in runs[0][1]}) > 3  # past the defaults: sampled settings, and still equal


def test_resume_continues_the_study(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "search"
    args = ("tune", str(sample), "--task", "rating", "--models", "bias,mf", "--out", str(out))
    assert cli(*args, "--trials", "3")[0] == 0
    first = pl.read_csv(out / "leaderboard.csv").sort("trial")
    code, _, stderr = cli(*args, "--trials", "3")  # the same folder without --resume: refused, untouched
    assert code == 2 and "--resume" in stderr
    code, _, stderr = cli(*args, "--trials", "6", "--resume")
    assert code == 0, stderr
    rec = json.loads((out / "search.json").read_text())
    assert sum(rec["trials"].values()) == 6 and len(rec["runs"]) == 2
    board = pl.read_csv(out / "leaderboard.csv").sort("trial")
    assert board["trial"].to_list() == list(range(6))
    assert board.head(3).select("model", "settings").rows() == first.select("model", "settings").rows()
    code, _, stderr = cli("tune", str(sample), "--task", "ranking", "--out", str(out), "--resume")
    assert code == 2 and "--task rating" in stderr


def test_a_trial_left_running_by_a_stopped_search_is_run_again_on_resume(sample: Path, tmp_path: Path) -> None:
    import optuna

    from recotorch.tune.storage import counted

    out = tmp_path / "search"
    args = ("tune", str(sample), "--task", "rating", "--models", "bias,mf", "--out", str(out))
    assert cli(*args, "--trials", "3")[0] == 0
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    study = optuna.load_study(study_name="recotorch", storage=storage)
    stale = study.ask()  # what a killed worker leaves: a claimed trial, running forever
    stale.suggest_categorical("model", ["bias", "mf"])
    assert len(counted(study)) == 4
    code, _, stderr = cli(*args, "--trials", "5", "--resume")
    assert code == 0, stderr
    assert "1 trial(s) left running by the earlier run queued again" in stderr
    trials = journal_trials(out)
    assert len(trials) == 5 and all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert stale.number not in {t.number for t in trials}  # replaced by its re-queued copy, not counted
    again = [t for t in trials if t.user_attrs.get("requeued_from") == stale.number]
    assert len(again) == 1 and again[0].params["model"] == stale.params["model"]


@pytest.mark.slow
def test_two_workers_share_one_study_exactly(sample: Path, tmp_path: Path) -> None:
    """A worker process waits for the search; the main one (here in this process) creates it; together they
    finish exactly --trials trials, each slot once."""
    out = tmp_path / "shared"
    worker = subprocess.Popen([sys.executable, "-m", "recotorch", "tune", str(sample), "--out", str(out), "--worker"],
                              env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = worker.stderr.readline()  # the worker is up and polling for the folder
    assert "waiting for a search" in first, first + worker.stderr.read()
    code, _, m_err = cli("tune", str(sample), "--out", str(out), "--task", "rating", "--models", "bias,mf",
                         "--trials", "6")
    _, w_err = worker.communicate(timeout=HANG_GUARD)
    assert code == 0, m_err
    assert worker.returncode == 0, w_err
    trials = journal_trials(out)
    assert len(trials) == 6 and all(t.state.is_finished() for t in trials)  # none lost, none extra
    assert len({t.number for t in trials}) == 6
    defaults = [t.user_attrs["defaults_of"] for t in trials if "defaults_of" in t.user_attrs
                and not t.user_attrs.get("stack")]
    assert sorted(defaults) == ["bias", "mf"]  # each queued first trial ran once
    assert [t.number for t in trials if t.user_attrs.get("stack")] == [5]  # the blend of the two, in the last slot
    by_worker: dict[str, int] = {}
    for t in trials:
        by_worker[t.user_attrs["worker"]] = by_worker.get(t.user_attrs["worker"], 0) + 1
    ran = int(w_err.split("done: ")[1].split()[0])
    assert sum(by_worker.values()) == 6 and (ran == 0 or ran in by_worker.values())
    assert load(out / "model").name in ("bias", "mf", "blend")


def test_fit_model_auto_writes_a_model_and_keeps_the_search_beside_it(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "auto"
    code, _, stderr = cli("fit", str(sample), "--model", "auto", "--budget", "6", "--out", str(out))
    assert code == 0, stderr
    model = load(out)
    rec = json.loads((tmp_path / "auto.tune" / "search.json").read_text())
    assert rec["task"] == "rating" and rec["best"]["model"] == model.name
    assert rec["runs"][0]["budget_s"] == 6
    code, _, stderr = cli("fit", str(sample), "--model", "auto", "--dim", "8", "--out", str(tmp_path / "x"))
    assert code == 2 and "--dim" in stderr and not (tmp_path / "x").exists()
    code, _, stderr = cli("fit", str(sample), "--model", "mf", "--budget", "5", "--out", str(tmp_path / "y"))
    assert code == 2 and "--budget" in stderr


def test_output_folder_rules(sample: Path, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    code, _, stderr = cli("tune", str(sample), "--trials", "1", "--out", str(busy))
    assert code == 2 and "not empty" in stderr
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    code, _, stderr = cli("tune", str(sample), "--trials", "1", "--out", str(sample.parent))
    assert code == 2 and "input" in stderr
    code, _, stderr = cli("tune", str(sample), "--trials", "1", "--resume", "--out", str(tmp_path / "new"))
    assert code == 2 and "no search" in stderr
    code, _, stderr = cli("tune", str(sample), "--task", "next", "--trials", "1", "--threshold", "4",
                          "--out", str(tmp_path / "n"))
    assert code == 2 and "--threshold" in stderr


def test_a_model_that_cannot_fit_is_skipped_with_its_reason(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    code, _, stderr = cli("tune", str(sample), "--task", "ranking", "--models", "pop,ease", "--memory-gb", "0.001",
                          "--trials", "2", "--out", str(out))
    assert code == 0, stderr
    rec = json.loads((out / "search.json").read_text())
    assert rec["candidates"] == ["pop"] and "memory" in rec["skipped"]["ease"]
    assert "skipped ease" in stderr


WATCH = textwrap.dedent("""
    import sys, polars
    seen, log = [], sys.argv.pop()
    def hook(event, args):
        if event == "open" and args:
            seen.append(str(args[0]))
    sys.addaudithook(hook)
    for name in [n for n in dir(polars) if n.startswith(("read_", "scan_"))]:
        real = getattr(polars, name)
        def wrapped(source, *a, _real=real, **k):
            seen.append(str(source))
            return _real(source, *a, **k)
        setattr(polars, name, wrapped)
    from recotorch.cli import main
    try:
        main()
    finally:
        open(log, "w").write("\\n".join(seen))
""")


def _honesty_folder(sample: Path, tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    data.mkdir()
    train = data / "train.csv"
    shutil.copy(sample, train)
    test = data / "test.csv"
    shutil.copy(sample, test)  # beside TRAIN, same columns: nothing but honesty keeps a tuner off it
    return train, test


@pytest.mark.slow
def test_the_tuner_reads_only_the_training_file(sample: Path, tmp_path: Path) -> None:
    """Python-level opens and polars reads are watched in the process; with strace, every open and stat too."""
    train, test = _honesty_folder(sample, tmp_path)
    log, trace = tmp_path / "opened.txt", tmp_path / "trace.txt"
    cmd = [sys.executable, "-c", WATCH, "tune", str(train), "--task", "rating", "--models", "bias",
           "--trials", "2", "--out", str(tmp_path / "out"), str(log)]
    traced = shutil.which("strace") is not None
    if traced:
        cmd = ["strace", "-f", "-qq", "-e", "trace=open,openat,openat2,stat,newfstatat,statx", "-o", str(trace), *cmd]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=HANG_GUARD)
    if traced and proc.returncode != 0 and "ptrace" in proc.stderr:  # strace not permitted here: watch only
        traced = False
        proc = subprocess.run(cmd[7:], env=ENV, capture_output=True, text=True, timeout=HANG_GUARD)
    assert proc.returncode == 0, proc.stderr
    opened = log.read_text().splitlines()
    assert any(Path(p).name == "train.csv" for p in opened)  # the watch sees the reads it must see
    assert not [p for p in opened if Path(p).name == "test.csv"]
    if traced:
        lines = trace.read_text().splitlines()
        assert any("train.csv" in line for line in lines)
        assert not [line for line in lines if str(test) in line or "test.csv" in line]


def test_sized_default_budget() -> None:
    from recotorch.cli.tune import default_budget

    assert default_budget(10_000) == 120 and default_budget(1_000_000) == 2000 and default_budget(10**9) == 3600


def test_a_column_of_counts_is_searched_as_ranking_and_said(sample: Path, tmp_path: Path) -> None:
    plays = tmp_path / "plays.csv"
    pl.read_csv(sample).with_columns((pl.col("rating") * 60).alias("rating")).write_csv(plays)  # up to 300
    out = tmp_path / "counts"
    code, _, stderr = cli("tune", str(plays), "--models", "pop", "--trials", "1", "--out", str(out))
    assert code == 0, stderr
    assert "counts rather than a rating scale" in stderr and "--task ranking" in stderr
    assert json.loads((out / "search.json").read_text())["task"] == "ranking"
    code, _, stderr = cli("tune", str(plays), "--explicit", "--models", "bias", "--trials", "1",
                          "--out", str(tmp_path / "asked"))
    assert code == 0, stderr
    assert "counts rather than" not in stderr
    assert json.loads((tmp_path / "asked" / "search.json").read_text())["task"] == "rating"
