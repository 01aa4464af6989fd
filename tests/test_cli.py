"""The command line, run as real processes: fit, predict, evaluate, interrupt and resume, quickstart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

import recotorch as rt

HANG_GUARD = 1800  # seconds: a guard against a hung process, not a speed requirement


def run_cli(*args: str, check: bool = True, timeout: float = HANG_GUARD) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "recotorch", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def u1(ml100k_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """u1.base / u1.test as headed CSVs, the shape a user's own files have."""
    root = tmp_path_factory.mktemp("u1")
    names = ["user", "item", "rating", "timestamp"]
    paths = []
    for part in ("base", "test"):
        frame = pl.read_csv(ml100k_dir / f"u1.{part}", separator="\t", has_header=False, new_columns=names)
        path = root / f"u1_{part}.csv"
        frame.write_csv(path)
        paths.append(path)
    return paths[0], paths[1]


@pytest.mark.slow
def test_fit_predict_evaluate_round_trip(u1, tmp_path):
    train, test = u1
    proc = run_cli("fit", str(train), "--model", "mf", "--out", str(tmp_path / "mf"))
    assert "fitted mf on 80,000 rows" in proc.stdout
    assert not (tmp_path / "mf.checkpoint").exists()  # cleaned after a successful save
    pairs = tmp_path / "pairs.csv"
    pl.DataFrame({"user": [1, 1, 99999], "item": [1, 424242, 1]}).write_csv(pairs)
    proc = run_cli("predict", str(tmp_path / "mf"), str(pairs), "--out", str(tmp_path / "pred.csv"))
    pred = pl.read_csv(tmp_path / "pred.csv")
    assert pred.columns == ["user", "item", "prediction", "known"]
    assert pred["known"].to_list() == [True, False, False]
    assert pred["prediction"].is_between(0, 5.5).all()
    assert "2 of 3 pairs had a user or item unseen" in proc.stderr.replace("\n", " ")
    proc = run_cli("evaluate", str(tmp_path / "mf"), str(test), "--train", str(train))
    for name in ("mf", "mean", "bias"):
        assert name in proc.stdout
    assert "RMSE" in proc.stdout


@pytest.mark.slow
def test_implicit_fit_recommend_and_similar(u1, tmp_path):
    train, _ = u1
    model_dir = tmp_path / "ease"
    proc = run_cli("fit", str(train), "--model", "ease", "--implicit", "--threshold", "4", "--reg", "400",
                   "--half-life", "0.2", "--out", str(model_dir))
    assert "fitted ease" in proc.stdout
    users = tmp_path / "users.csv"
    pl.DataFrame({"user": [1, 2, 3]}).write_csv(users)
    run_cli("recommend", str(model_dir), "--k", "15", "--users", str(users), "--out", str(tmp_path / "recs.csv"))
    recs = pl.read_csv(tmp_path / "recs.csv")
    assert recs.columns == ["user", "item", "rank", "score"]
    assert recs.group_by("user").len().sort("user")["len"].to_list() == [15, 15, 15]
    assert recs.select(pl.struct("user", "item").is_unique().all()).item()  # never an item twice in a list
    positives = pl.read_csv(train).filter(pl.col("rating") >= 4).select("user", "item")
    assert recs.join(positives, on=["user", "item"]).is_empty()  # seen items excluded
    pl.DataFrame({"user": [1, 424242]}).write_csv(users)
    proc = run_cli("recommend", str(model_dir), "--users", str(users), "--out", str(tmp_path / "bad.csv"), check=False)
    assert proc.returncode != 0 and "424242" in proc.stderr and not (tmp_path / "bad.csv").exists()
    proc = run_cli("similar", str(model_dir), "50", "--k", "5")
    assert proc.stdout.count("\n") >= 5
    # evaluate scores relevance as the model was fitted (ratings >= 4) unless --threshold says otherwise
    test = u1[1]
    fitted = run_cli("evaluate", str(model_dir), str(test))
    assert "ratings >= 4, the threshold the model was fitted with" in fitted.stderr
    assert fitted.stdout == run_cli("evaluate", str(model_dir), str(test), "--threshold", "4").stdout
    assert fitted.stdout != run_cli("evaluate", str(model_dir), str(test), "--threshold", "1").stdout
    proc = run_cli("fit", str(train), "--model", "mf", "--half-life", "0.2", "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode == 2 and "--half-life" in proc.stderr and "Traceback" not in proc.stderr


def test_synth_writes_a_log_that_fits_with_the_fast_settings(tmp_path):
    path = tmp_path / "synth.parquet"
    proc = run_cli("synth", str(path), "--users", "300", "--items", "120", "--rows", "6000", "--seed", "3")
    assert "wrote 6,000 interactions" in proc.stdout
    data = rt.read_interactions(path)
    assert (len(data), data.n_users, data.n_items) == (6000, 300, 120)
    run_cli("fit", str(path), "--model", "mf", "--fast", "--batch-size", "512", "--out", str(tmp_path / "mf"))
    fitted = rt.load(tmp_path / "mf")
    assert (fitted.optimizer, fitted.shuffle, fitted.batch_size) == ("rowwise_adagrad", "user_blocks", 512)
    proc = run_cli("fit", str(path), "--model", "ease", "--fast", "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode != 0 and "--fast" in proc.stderr
    proc = run_cli("synth", str(tmp_path / "bad.csv"), "--users", "50", "--rows", "10", check=False)
    assert proc.returncode != 0 and not (tmp_path / "bad.csv").exists()


def test_custom_columns_and_string_ids(tmp_path):
    path = tmp_path / "plays.tsv"
    rows = [f"u{u}\ts{(u * 7 + j) % 30}\t{1 + (u + j) % 5}" for u in range(40) for j in range(8)]
    path.write_text("listener\tsong\tstars\n" + "\n".join(rows) + "\n")
    run_cli("fit", str(path), "--model", "bias", "--out", str(tmp_path / "m"),
            "--user-col", "listener", "--item-col", "song", "--rating-col", "stars")
    model = rt.load(tmp_path / "m")
    assert model.users_.ids.dtype == pl.Utf8 and "u3" in model.users_.ids.to_list()


def test_bad_file_gives_a_clear_error_and_writes_nothing(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,rating\n1,2,4\n1,3,abc\n")
    proc = run_cli("fit", str(path), "--model", "mf", "--out", str(tmp_path / "m"), check=False)
    assert proc.returncode == 2
    assert "ratings.csv" in proc.stderr and "line 3" in proc.stderr and "rating" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "m").exists()


def test_unknown_option_for_a_model_is_refused(u1, tmp_path):
    proc = run_cli("fit", str(u1[0]), "--model", "bias", "--dim", "8", "--out", str(tmp_path / "m"), check=False)
    assert proc.returncode == 2 and "--model bias does not take --dim" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_fit_resumes_to_the_same_model(u1, tmp_path, sig):
    train, test = u1
    args = ["fit", str(train), "--model", "mf", "--epochs", "40", "--batch-size", "2048"]
    run_cli(*args, "--out", str(tmp_path / "full"))
    out = tmp_path / "resumed"
    checkpoint = tmp_path / "resumed.checkpoint" / "checkpoint.pt"
    proc = subprocess.Popen([sys.executable, "-m", "recotorch", *args, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + HANG_GUARD
    while not checkpoint.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert checkpoint.exists(), "no checkpoint appeared"
    os.kill(proc.pid, sig)
    _, stderr = proc.communicate(timeout=HANG_GUARD)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert not out.exists()  # nothing half-written where the model goes
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "--resume" in stderr
    resumed = run_cli(*args, "--out", str(out), "--resume")
    assert "fitted mf" in resumed.stdout
    a, b = rt.load(tmp_path / "full"), rt.load(out)
    assert b.history_.epochs[-1].epoch == 39
    frame = pl.read_csv(test)
    pa = a.predict(frame["user"], frame["item"]).values
    pb = b.predict(frame["user"], frame["item"]).values
    assert (abs(pa - pb) < 1e-5).all()


@pytest.mark.slow
def test_quickstart_trains_compares_and_saves(ml100k_dir, tmp_path):
    proc = run_cli("quickstart", "--data", str(ml100k_dir), "--out", str(tmp_path / "qs"))
    for label in ("global mean", "user+item bias", "MatrixFactorization", "NeuralCF", "RMSE"):
        assert label in proc.stdout
    assert "local copy" in proc.stdout
    report = (tmp_path / "qs" / "report.md").read_text()
    assert "| MatrixFactorization |" in report and "learning_curves.png" in report
    png = (tmp_path / "qs" / "learning_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    model = rt.load(tmp_path / "qs" / "model-mf")
    assert model.item_features_ is not None and "title" in model.item_features_.columns
