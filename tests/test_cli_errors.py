"""Bad invocations of `recotorch`: one clear line, never a traceback, nothing touched.

Every case runs the CLI's entry point (`recotorch.cli.main`, the same code `python -m recotorch`
runs) in its own folder and checks: exit code 2 (the user's mistake), no "Traceback" in stdout or
stderr, the file or option at fault named on stderr, and every byte of the case's folder and of the
shared model directory unchanged (SHA-256 of the whole tree before and after). The whole sweep runs
in-process (importing torch once instead of ~80 times); every `SUBPROCESS_EVERY`-th case also runs
as a real `python -m recotorch` process, to show the real process answers the same way.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import torch

import recotorch as rt
from recotorch.data.interactions import Interactions
from tests.helpers.cli import run_in_process

HANG_GUARD = 1800  # seconds: only against a hung process, never a speed requirement
SUBPROCESS_EVERY = 8
HEADER = "user,item,rating,timestamp\n"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "recotorch", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=HANG_GUARD)


def run_cli_in_process(args: list[str], cwd: Path, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> subprocess.CompletedProcess:
    """`recotorch ARGS` through `recotorch.cli.main` in this process, as a CompletedProcess."""
    code, out, err = run_in_process(args, capsys, monkeypatch, cwd)
    return subprocess.CompletedProcess(args, code, out, err)


def tree_digest(*roots: Path) -> dict[str, str]:
    """Path -> SHA-256 (or 'dir' / 'link') of everything under `roots`."""
    found: dict[str, str] = {}
    for root in roots:
        for path in sorted([root, *root.rglob("*")]):
            if path.is_symlink():
                found[str(path)] = "link:" + os.readlink(path)
            elif path.is_dir():
                found[str(path)] = "dir"
            else:
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def ratings_text(n_users: int = 30, n_items: int = 8, *, timestamps: bool = True) -> str:
    rows = [f"{u},{i},{1 + (u * 3 + i) % 5}" + (f",{1000 + u * n_items + i}" if timestamps else "")
            for u in range(1, n_users + 1) for i in range(1, n_items + 1) if (u + i) % 3]
    return (HEADER if timestamps else "user,item,rating\n") + "\n".join(rows) + "\n"


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny ratings file and one small fitted MF model directory, shared by every case."""
    root = tmp_path_factory.mktemp("cli_errors_shared")
    train = root / "train.csv"
    train.write_text(ratings_text())
    frame = pl.read_csv(train)
    data = Interactions.from_frame(frame, timestamp="timestamp", source=str(train))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = rt.MatrixFactorization(dim=4, epochs=1, batch_size=64).fit(data)
    finally:
        torch.set_num_threads(before)
    return {"train": train, "model": model.save(root / "mf")}


Setup = Callable[[Path, dict[str, Path]], list[str]]


@dataclass
class Case:
    id: str
    setup: Setup  # writes files into the case folder, returns the CLI arguments (cwd = case folder)
    names: tuple[str, ...]  # each must appear on stderr


def _write(d: Path, name: str, text: str | bytes) -> Path:
    path = d / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def fit_file(name: str, content: str | bytes | None, *extra: str) -> Setup:
    """`fit NAME --out model` after writing `content` to NAME (None: write nothing)."""
    def setup(d: Path, s: dict[str, Path]) -> list[str]:
        if content is not None:
            _write(d, name, content)
        return ["fit", name, "--out", "model", *extra]
    return setup


def fit_opts(*opts: str, content: str | None = None) -> Setup:
    """`fit train.csv --out model OPTS` on a small valid file (or `content`)."""
    def setup(d: Path, s: dict[str, Path]) -> list[str]:
        _write(d, "train.csv", content if content is not None else s["train"].read_text())
        return ["fit", "train.csv", "--out", "model", *opts]
    return setup


def with_model(verb: str, *args: str, files: dict[str, str | bytes] | None = None) -> Setup:
    """VERB SHARED_MODEL ARGS after writing `files` into the case folder."""
    def setup(d: Path, s: dict[str, Path]) -> list[str]:
        for name, text in (files or {}).items():
            _write(d, name, text)
        return [verb, str(s["model"]), *args]
    return setup


def custom(fn: Callable[[Path, dict[str, Path]], list[str]]) -> Setup:
    return fn


def _parquet_truncated() -> bytes:
    import io

    buf = io.BytesIO()
    pl.DataFrame({"user": list(range(200)), "item": list(range(200)), "rating": [3.0] * 200}).write_parquet(buf)
    whole = buf.getvalue()
    return whole[: len(whole) // 2]


def _dir_named_csv(d: Path, s: dict[str, Path]) -> list[str]:
    (d / "x.csv").mkdir()
    return ["fit", "x.csv", "--out", "model"]


def _literal_brackets(d: Path, s: dict[str, Path]) -> list[str]:
    _write(d, "rat[1].csv", HEADER + "1,2,4,1\n1,3,abc,2\n")  # the named file is bad...
    _write(d, "rat1.csv", s["train"].read_text())  # ...the one a glob would pick is fine
    return ["fit", "rat[1].csv", "--out", "model", "--model", "bias"]


def _out_existing_file(d: Path, s: dict[str, Path]) -> list[str]:
    _write(d, "train.csv", s["train"].read_text())
    _write(d, "notes.txt", "my notes\n")
    return ["fit", "train.csv", "--out", "notes.txt", "--model", "bias"]


def _out_user_folder(d: Path, s: dict[str, Path]) -> list[str]:
    _write(d, "train.csv", s["train"].read_text())
    _write(d, "mydata/thesis.tex", "chapter 1\n")
    _write(d, "mydata/sub/figure.png", b"\x89PNG....")
    return ["fit", "train.csv", "--out", "mydata", "--model", "bias"]


def _out_cwd(d: Path, s: dict[str, Path]) -> list[str]:
    _write(d, "train.csv", s["train"].read_text())
    _write(d, "other.txt", "keep me\n")
    return ["fit", "train.csv", "--out", str(d), "--model", "bias"]


def _out_dot(d: Path, s: dict[str, Path]) -> list[str]:
    _write(d, "train.csv", s["train"].read_text())
    return ["fit", "train.csv", "--out", ".", "--model", "bias"]


def _out_input_folder(d: Path, s: dict[str, Path]) -> list[str]:
    _write(d, "data/train.csv", s["train"].read_text())
    return ["fit", "data/train.csv", "--out", "data", "--model", "bias"]


def _out_valid_folder(d: Path, s: dict[str, Path]) -> list[str]:
    _write(d, "train.csv", s["train"].read_text())
    _write(d, "held/valid.csv", s["train"].read_text())
    return ["fit", "train.csv", "--valid", "held/valid.csv", "--out", "held", "--model", "mf"]


def _out_under_a_file(d: Path, s: dict[str, Path]) -> list[str]:
    # root ignores permission bits, so "unwritable" is a path whose parent is a file
    _write(d, "train.csv", s["train"].read_text())
    _write(d, "blocker", "a file where a folder would have to be\n")
    return ["fit", "train.csv", "--out", "blocker/model", "--model", "bias"]


def _user_checkpoint_folder(d: Path, s: dict[str, Path]) -> list[str]:
    _write(d, "train.csv", s["train"].read_text())
    _write(d, "model.checkpoint/diary.txt", "mine, not recotorch's\n")
    return ["fit", "train.csv", "--out", "model", "--model", "mf", "--epochs", "1"]


def _predict_out_existing(d: Path, s: dict[str, Path]) -> list[str]:
    _write(d, "pairs.csv", "user,item\n1,1\n")
    _write(d, "pred.csv", "precious\n")
    return ["predict", str(s["model"]), "pairs.csv", "--out", "pred.csv"]


def _predict_out_is_input(d: Path, s: dict[str, Path]) -> list[str]:
    _write(d, "pairs.csv", "user,item\n1,1\n")
    return ["predict", str(s["model"]), "pairs.csv", "--out", "pairs.csv", "--overwrite"]


def _predict_out_in_model(d: Path, s: dict[str, Path]) -> list[str]:
    _write(d, "pairs.csv", "user,item\n1,1\n")
    return ["predict", str(s["model"]), "pairs.csv", "--out", str(s["model"] / "users.json"), "--overwrite"]


def _predict_out_under_file(d: Path, s: dict[str, Path]) -> list[str]:
    _write(d, "pairs.csv", "user,item\n1,1\n")
    _write(d, "blocker", "file\n")
    return ["predict", str(s["model"]), "pairs.csv", "--out", "blocker/pred.csv"]


def _explain_out_existing(d: Path, s: dict[str, Path]) -> list[str]:
    _write(d, "ex/explain.json", "{\"mine\": true}\n")
    return ["explain", str(s["model"]), "--out", "ex", "--clusters", "0"]


def _model_missing(d: Path, s: dict[str, Path]) -> list[str]:
    _write(d, "pairs.csv", "user,item\n1,1\n")
    return ["predict", "no_such_model", "pairs.csv", "--out", "pred.csv"]


def _model_not_a_model(d: Path, s: dict[str, Path]) -> list[str]:
    _write(d, "pairs.csv", "user,item\n1,1\n")
    _write(d, "folder/readme.txt", "not a model\n")
    return ["predict", "folder", "pairs.csv", "--out", "pred.csv"]


def _model_is_a_file(d: Path, s: dict[str, Path]) -> list[str]:
    _write(d, "model.csv", "user,item\n1,1\n")
    return ["recommend", "model.csv", "--out", "recs.csv"]


def _resume_without_checkpoint(d: Path, s: dict[str, Path]) -> list[str]:
    _write(d, "train.csv", s["train"].read_text())
    return ["fit", "train.csv", "--out", "model", "--model", "mf", "--resume"]


def _sep_on_parquet(d: Path, s: dict[str, Path]) -> list[str]:
    pl.read_csv(s["train"]).write_parquet(d / "log.parquet")
    return ["fit", "log.parquet", "--sep", ",", "--out", "model"]


GOOD = ratings_text()
SAME_TIME = HEADER + "".join(f"{u},{i},{1 + (u + i) % 5},5\n" for u in range(1, 9) for i in range(1, 6))
NO_TIME = ratings_text(timestamps=False)
NO_RATING = "user,item,timestamp\n" + "".join(f"{u},{i},{u * 10 + i}\n" for u in range(1, 9) for i in range(1, 6))

CASES = [
    # bad input files
    Case("missing file", fit_file("missing.csv", None), ("missing.csv",)),
    Case("directory named x.csv", custom(_dir_named_csv), ("x.csv",)),
    Case("empty file", fit_file("empty.csv", ""), ("empty.csv",)),
    Case("header only", fit_file("header.csv", HEADER), ("header.csv",)),
    Case("wrong columns", fit_file("cols.csv", "a,b,c\n1,2,3\n"), ("cols.csv",)),
    Case("binary garbage", fit_file("garbage.csv", bytes(range(256)) * 40), ("garbage.csv",)),
    Case("truncated parquet", fit_file("trunc.parquet", _parquet_truncated()), ("trunc.parquet",)),
    Case("rating abc", fit_file("abc.csv", HEADER + "1,2,4,1\n1,3,abc,2\n"), ("abc.csv", "line 3")),
    Case("rating 1e300", fit_file("huge.csv", HEADER + "1,2,4,1\n1,3,1e300,2\n"), ("huge.csv", "line 3")),
    Case("rating nan", fit_file("nan.csv", HEADER + "1,2,4,1\n1,3,nan,2\n"), ("nan.csv", "line 3")),
    Case("rating inf", fit_file("inf.csv", HEADER + "1,2,4,1\n1,3,inf,2\n"), ("inf.csv", "line 3")),
    Case("literal rat[1].csv", custom(_literal_brackets), ("rat[1].csv", "line 3")),
    Case("valid file missing", fit_opts("--valid", "nope.csv"), ("nope.csv",)),
    Case("pairs missing", with_model("predict", "pairs.csv", "--out", "p.csv"), ("pairs.csv",)),
    Case("pairs empty", with_model("predict", "pairs.csv", "--out", "p.csv", files={"pairs.csv": ""}),
         ("pairs.csv",)),
    Case("pairs header only", with_model("predict", "pairs.csv", "--out", "p.csv",
                                         files={"pairs.csv": "user,item\n"}), ("pairs.csv",)),
    Case("pairs wrong column", with_model("predict", "pairs.csv", "--out", "p.csv",
                                          files={"pairs.csv": "user,thing\n1,2\n"}), ("pairs.csv", "--item-col")),
    Case("users empty", with_model("recommend", "--users", "u.csv", "--out", "r.csv", files={"u.csv": ""}),
         ("u.csv",)),
    Case("users header only", with_model("recommend", "--users", "u.csv", "--out", "r.csv",
                                         files={"u.csv": "user\n"}), ("u.csv",)),
    Case("unknown users", with_model("recommend", "--users", "u.csv", "--out", "r.csv",
                                     files={"u.csv": "user\n1\n424242\n"}), ("424242", "--fallback")),
    # bad option values
    Case("--dim -4", fit_opts("--dim", "-4"), ("--dim",)),
    Case("--dim 0", fit_opts("--dim", "0"), ("--dim",)),
    Case("--epochs 0", fit_opts("--epochs", "0"), ("--epochs",)),
    Case("--iterations -3", fit_opts("--model", "als", "--iterations", "-3"), ("--iterations",)),
    Case("--batch-size 0", fit_opts("--batch-size", "0"), ("--batch-size",)),
    Case("--neighbours 0", fit_opts("--model", "itemknn", "--neighbours", "0"), ("--neighbours",)),
    Case("--n-neg 0", fit_opts("--model", "bpr", "--n-neg", "0"), ("--n-neg",)),
    Case("--lr -1", fit_opts("--lr", "-1"), ("--lr",)),
    Case("--weight-decay -0.5", fit_opts("--weight-decay", "-0.5"), ("--weight-decay",)),
    Case("--reg -1", fit_opts("--model", "ease", "--reg", "-1"), ("--reg",)),
    Case("--alpha -1", fit_opts("--model", "als", "--alpha", "-1"), ("--alpha",)),
    # each model's own declaration, named as the flag: ease's reg and rp3beta's alpha are > 0, not >= 0
    Case("--reg 0 with ease", fit_opts("--model", "ease", "--reg", "0"), ("--reg", "> 0", "--model ease")),
    Case("--alpha 0 with rp3beta", fit_opts("--model", "rp3beta", "--alpha", "0"),
         ("--alpha", "> 0", "--model rp3beta")),
    Case("--cell bogus", fit_opts("--model", "gru4rec", "--cell", "bogus"), ("--cell", "'gru' or 'lstm'")),
    Case("--loss bogus", fit_opts("--model", "sasrec", "--loss", "bogus"), ("--loss", "'gbce'")),
    Case("--half-life 0", fit_opts("--model", "ease", "--half-life", "0"), ("--half-life",)),
    Case("--half-life -1", fit_opts("--model", "ease", "--half-life", "-1"), ("--half-life",)),
    Case("--device tpu9", fit_opts("--device", "tpu9"), ("--device",)),
    Case("--optimizer bogus", fit_opts("--optimizer", "bogus"), ("--optimizer",)),
    Case("--model nosuch", fit_opts("--model", "nosuch"), ("--model", "nosuch")),
    Case("--dim abc (usage)", fit_opts("--dim", "abc"), ("--dim",)),
    Case("no --out (usage)", custom(lambda d, s: ["fit", str(s["train"])]), ("--out",)),
    Case("recommend --k 0 (usage)", with_model("recommend", "--k", "0", "--out", "r.csv"), ("--k",)),
    Case("recommend --fallback maybe", with_model("recommend", "--fallback", "maybe", "--out", "r.csv"),
         ("--fallback",)),
    Case("recommend --batch-size 0", with_model("recommend", "--batch-size", "0", "--out", "r.csv"),
         ("--batch-size",)),
    Case("evaluate --task foo", with_model("evaluate", "t.csv", "--task", "foo", files={"t.csv": GOOD}),
         ("--task",)),
    Case("evaluate --k 0", with_model("evaluate", "t.csv", "--task", "ranking", "--k", "0",
                                      files={"t.csv": GOOD}), ("--k",)),
    Case("evaluate rating --threshold", with_model("evaluate", "t.csv", "--threshold", "4", files={"t.csv": GOOD}),
         ("--threshold",)),
    # combinations that would do nothing
    Case("--patience without --valid", fit_opts("--patience", "2"), ("--patience", "--valid")),
    Case("--threshold without rating column", fit_opts("--model", "ease", "--threshold", "4", content=NO_RATING),
         ("--threshold",)),
    Case("--threshold with --explicit", fit_opts("--model", "mf", "--threshold", "4"), ("--threshold",)),
    Case("--valid with --implicit", fit_opts("--model", "ease", "--implicit", "--valid", "train.csv"),
         ("--valid",)),
    Case("--half-life without timestamps", fit_opts("--model", "ease", "--half-life", "0.2", content=NO_TIME),
         ("--half-life",)),
    Case("--half-life equal timestamps", fit_opts("--model", "ease", "--half-life", "0.2", content=SAME_TIME),
         ("--half-life",)),
    Case("--fast with ease", fit_opts("--model", "ease", "--fast"), ("--fast",)),
    Case("--set unknown key", fit_opts("--set", "epoch=2"), ("--set epoch", "epochs")),
    Case("--set without =", fit_opts("--set", "epochs"), ("--set", "KEY=VALUE")),
    Case("--set value out of range", fit_opts("--set", "grad_accum=0"), ("--set grad_accum",)),
    Case("--set bad choice", fit_opts("--set", "schedule=wavy"), ("--set schedule",)),
    Case("--set and its flag both", fit_opts("--epochs", "3", "--set", "epochs=2"), ("--set epochs", "--epochs")),
    Case("--dim with bias", fit_opts("--model", "bias", "--dim", "8"), ("--dim",)),
    Case("--reg with mf", fit_opts("--model", "mf", "--reg", "3"), ("--reg",)),
    Case("--implicit with mf", fit_opts("--model", "mf", "--implicit"), ("--implicit",)),
    Case("--resume without checkpoint", custom(_resume_without_checkpoint), ("--resume",)),
    Case("explain --item unknown", custom(lambda d, s: ["explain", str(s["model"]), "--item", "nope",
                                                                "--out", "ex"]), ("nope",)),
    # bad output targets
    Case("fit --out existing file", custom(_out_existing_file), ("notes.txt",)),
    Case("fit --out user folder", custom(_out_user_folder), ("mydata",)),
    Case("fit --out cwd", custom(_out_cwd), ("current folder",)),
    Case("fit --out .", custom(_out_dot), ("current folder",)),
    Case("fit --out input folder", custom(_out_input_folder), ("data", "input")),
    Case("fit --out valid folder", custom(_out_valid_folder), ("held", "input")),
    Case("fit --out under a file", custom(_out_under_a_file), ("blocker",)),
    Case("fit user's OUT.checkpoint", custom(_user_checkpoint_folder), ("model.checkpoint",)),
    Case("predict --out existing", custom(_predict_out_existing), ("pred.csv", "--overwrite")),
    Case("predict --out is input", custom(_predict_out_is_input), ("pairs.csv", "input")),
    Case("predict --out inside model", custom(_predict_out_in_model), ("users.json",)),
    Case("predict --out under a file", custom(_predict_out_under_file), ("blocker",)),
    Case("recommend --out existing", with_model("recommend", "--out", "r.csv", files={"r.csv": "mine\n"}),
         ("r.csv", "--overwrite")),
    Case("similar --out existing", with_model("similar", "1", "--out", "s.csv", files={"s.csv": "mine\n"}),
         ("s.csv", "--overwrite")),
    Case("lr-find --out existing", custom(lambda d, s: [
        "lr-find", str(_write(d, "train.csv", GOOD)), "--out", str(_write(d, "lr.png", b"mine"))]),
        ("lr.png", "--overwrite")),
    Case("lr-find --out is input", custom(lambda d, s: [
        "lr-find", str(_write(d, "train.csv", GOOD)), "--out", "train.csv", "--overwrite"]), ("train.csv", "input")),
    Case("explain --out existing files", custom(_explain_out_existing), ("explain.json", "--overwrite")),
    Case("synth over an existing file", custom(lambda d, s: [
        "synth", str(_write(d, "log.csv", "mine\n")), "--users", "5", "--items", "5", "--rows", "10"]),
        ("log.csv", "--overwrite")),
    Case("quickstart over a user's report.md", custom(lambda d, s: [
        "quickstart", "--out", str(_write(d, "run/report.md", "my report\n").parent)]), ("report.md", "--overwrite")),
    Case("quickstart --out a file", custom(lambda d, s: [
        "quickstart", "--out", str(_write(d, "run.txt", "mine\n"))]), ("run.txt",)),
    # reading options (--sep, --no-header, --format) and what they read
    Case("--no-header with a column name", fit_opts("--no-header", "--user-col", "user"), ("--user-col",)),
    Case("--no-header without --user-col", fit_opts("--no-header"), ("--user-col", "position")),
    Case("--format xls", fit_opts("--format", "xls"), ("--format", "xls")),
    Case("--format parquet on a CSV", fit_opts("--format", "parquet"), ("train.csv", "--format")),
    Case("--sep on Parquet", custom(_sep_on_parquet), ("--sep", "log.parquet")),
    Case("--no-header on JSON Lines", fit_file("log.jsonl", '{"user": 1, "item": 2}\n', "--no-header"),
         ("--no-header", "log.jsonl")),
    Case("JSON Lines bad line", fit_file("log.jsonl", '{"user": 1, "item": 2}\n{"user": 1, "item"\n'),
         ("log.jsonl", "line 2")),
    Case("JSON array, not JSON Lines", fit_file("log.json", '[{"user": 1, "item": 2}]\n'), ("log.json", "JSON")),
    Case("JSON Lines field by position", fit_file("log.jsonl", '{"user": 1, "item": 2}\n', "--user-col", "0"),
         ("--user-col",)),
    Case("missing column: closest name and flag", fit_opts("--user-col", "usr"), ("--user-col", "did you mean 'user'")),
    Case("missing --rating-col", fit_opts("--rating-col", "stars"), ("--rating-col", "stars")),
    Case("Latin-1 bytes: no Python keyword in the hint", fit_file("lat.csv", HEADER.encode() + b"1,\xe9t\xe9,4,1\n"),
         ("lat.csv", "line 2", "iconv")),
    Case("headerless file read with a header", fit_file("u.data", "1\t2\t3\t4\n5\t6\t7\t8\n"),
         ("u.data", "--no-header")),
    Case("predict --input-format bogus", with_model("predict", "p.csv", "--out", "o.csv", "--input-format", "x",
                                                    files={"p.csv": "user,item\n1,1\n"}), ("--input-format",)),
    Case("predict --no-header, named column", with_model("predict", "p.tsv", "--out", "o.csv", "--no-header",
                                                          "--user-col", "user", files={"p.tsv": "1\t1\n"}),
         ("--user-col",)),
    Case("recommend --user-col without --users", with_model("recommend", "--user-col", "u", "--out", "r.csv"),
         ("--user-col", "--users")),
    Case("recommend --users, missing column", with_model("recommend", "--users", "u.csv", "--out", "r.csv",
                                                          files={"u.csv": "customer\n1\n"}), ("u.csv", "--user-col")),
    Case("evaluate --strict on training rows", custom(lambda d, s: [
        "evaluate", str(s["model"]), str(_write(d, "t.csv", s["train"].read_text())), "--strict"]),
        ("t.csv", "--strict", "trained on")),
    Case("evaluate --strict with --task next", with_model("evaluate", "t.csv", "--task", "next", "--strict",
                                                          files={"t.csv": GOOD}), ("--strict",)),
    Case("split --sep on JSON Lines", custom(lambda d, s: [
        "split", str(_write(d, "log.jsonl", '{"user": 1, "item": 2}\n')), "--sep", ",", "--out", "s"]), ("--sep",)),
    # model directories
    Case("model dir missing", custom(_model_missing), ("no_such_model",)),
    Case("model dir not a model", custom(_model_not_a_model), ("folder",)),
    Case("model dir is a file", custom(_model_is_a_file), ("model.csv",)),
]
if not torch.cuda.is_available():  # the message under test is the one for a machine without a GPU
    CASES.append(Case("--device cuda without a GPU", fit_opts("--device", "cuda"), ("--device", "GPU")))


def test_the_sweep_is_wide():
    assert len(CASES) >= 45


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_invocation_is_one_clear_line_and_changes_nothing(case: Case, shared, tmp_path, capsys, monkeypatch):
    work = tmp_path / "case"
    work.mkdir()
    args = case.setup(work, shared)
    before = tree_digest(work, shared["model"])
    _check_refused(case, run_cli_in_process(args, work, capsys, monkeypatch))
    assert tree_digest(work, shared["model"]) == before, "a failed command changed files"


SAMPLED = CASES[::SUBPROCESS_EVERY]


@pytest.mark.slow  # real processes; each costs about 2 s of CPU, mostly importing torch
@pytest.mark.parametrize("case", SAMPLED, ids=[c.id for c in SAMPLED])
def test_the_real_process_refuses_the_same_way(case: Case, shared, tmp_path):
    work = tmp_path / "case"
    work.mkdir()
    args = case.setup(work, shared)
    before = tree_digest(work, shared["model"])
    _check_refused(case, run_cli(*args, cwd=work))
    assert tree_digest(work, shared["model"]) == before, "a failed command changed files"


def _check_refused(case: Case, proc: subprocess.CompletedProcess) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\n{output}"
    assert "Traceback" not in output
    assert "internal error" not in output
    for name in case.names:
        assert name in proc.stderr, f"{name!r} not named in:\n{proc.stderr}"


def test_a_users_mistake_is_exactly_one_error_line(shared, tmp_path):
    proc = run_cli("fit", str(shared["train"]), "--out", str(tmp_path / "m"), "--dim", "-4")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and lines == ["error: --dim: must be > 0, got -4"]


def test_debug_shows_the_traceback(shared, tmp_path):
    proc = run_cli("--debug", "fit", str(shared["train"]), "--out", str(tmp_path / "m"), "--dim", "-4")
    assert proc.returncode == 2 and "Traceback" in proc.stderr and "--dim" in proc.stderr


def _boundary(body: str, *args: str) -> subprocess.CompletedProcess:
    code = ("import sys\nfrom recotorch.cli import boundary\n"
            f"boundary.DEBUG = '--debug' in sys.argv\ndef bug():\n    {body}\nsys.exit(boundary.run(bug))\n")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=HANG_GUARD)


def test_a_bug_is_reported_as_a_bug_with_exit_1():
    proc = _boundary("raise ZeroDivisionError('division by zero')")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "internal error" in proc.stderr and "ZeroDivisionError: division by zero" in proc.stderr
    assert "--debug" in proc.stderr
    proc = _boundary("raise ZeroDivisionError('division by zero')", "--debug")
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_literal_file_name_is_read_not_globbed(shared, tmp_path):
    _write(tmp_path, "rat[1].csv", GOOD)
    _write(tmp_path, "rat1.csv", HEADER + "1,2,4,1\n1,3,abc,2\n")  # a glob would pick this one and fail
    proc = run_cli("fit", "rat[1].csv", "--out", "m", "--model", "bias", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert rt.load(tmp_path / "m").n_users == 30


def test_gzipped_csv_with_a_csv_name_is_read_or_named(shared, tmp_path):
    """A gzip'd file called .csv is either read (by its magic bytes) or refused saying it is compressed."""
    _write(tmp_path, "ratings.csv", gzip.compress(GOOD.encode()))
    proc = run_cli("fit", "ratings.csv", "--out", "m", "--model", "bias", cwd=tmp_path)
    assert "Traceback" not in proc.stdout + proc.stderr
    if proc.returncode == 0:
        assert rt.load(tmp_path / "m").n_users == 30
    else:
        assert proc.returncode == 2 and "ratings.csv" in proc.stderr
        assert "gzip" in proc.stderr.lower() or "compress" in proc.stderr.lower(), proc.stderr
        assert "separator" not in proc.stderr


def test_set_reaches_any_model_option(shared, tmp_path, capsys, monkeypatch):
    args = ["fit", str(shared["train"]), "--out", "m", "--set", "epochs=2", "--set", "schedule=constant",
            "--set", "grad_accum=2"]
    proc = run_cli_in_process(args, tmp_path, capsys, monkeypatch)
    assert proc.returncode == 0, proc.stderr
    params = rt.load(tmp_path / "m").get_params()
    assert (params["epochs"], params["schedule"], params["grad_accum"]) == (2, "constant", 2)


def test_overwrite_replaces_an_output_file_only_when_asked(shared, tmp_path):
    pairs = _write(tmp_path, "pairs.csv", "user,item\n1,1\n2,3\n")
    pred = _write(tmp_path, "pred.csv", "old\n")
    proc = run_cli("predict", str(shared["model"]), str(pairs), "--out", str(pred))
    assert proc.returncode == 2 and pred.read_text() == "old\n"
    proc = run_cli("predict", str(shared["model"]), str(pairs), "--out", str(pred), "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert pl.read_csv(pred).columns == ["user", "item", "prediction", "known"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_fit_replaces_its_own_model_and_its_own_checkpoint_only(shared, tmp_path):
    out = tmp_path / "m"
    assert run_cli("fit", str(shared["train"]), "--out", str(out), "--model", "bias").returncode == 0
    proc = run_cli("fit", str(shared["train"]), "--out", str(out), "--model", "mf", "--epochs", "1")
    assert proc.returncode == 0, proc.stderr  # an existing model directory is the one overwrite
    assert rt.load(out).name == "mf"
    assert not (tmp_path / "m.checkpoint").exists()
    # a folder with the checkpoint's name holding anything else is refused and left as it is
    _write(tmp_path, "m.checkpoint/checkpoint.pt.notes", "mine\n")
    proc = run_cli("fit", str(shared["train"]), "--out", str(out), "--model", "mf", "--epochs", "1")
    assert proc.returncode == 2 and "m.checkpoint" in proc.stderr
    assert (tmp_path / "m.checkpoint" / "checkpoint.pt.notes").read_text() == "mine\n"
    # an empty one (an interrupted run can leave it) holds nothing to lose: it is used and removed
    (tmp_path / "m.checkpoint" / "checkpoint.pt.notes").unlink()
    proc = run_cli("fit", str(shared["train"]), "--out", str(out), "--model", "mf", "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "m.checkpoint").exists()


# ---- the pure pieces behind the boundary, in-process ------------------------------------------
def test_messages_are_one_line_and_name_the_file():
    from recotorch.cli.boundary import is_user_error, message_of

    err = FileNotFoundError(2, "No such file or directory", "data/x.csv")
    assert message_of(err) == "data/x.csv: No such file or directory" and is_user_error(err)
    assert message_of(KeyError("user 7 is unknown")) == "user 7 is unknown"
    assert message_of(ValueError("first\n  second\n")) == "first second"
    assert not is_user_error(ZeroDivisionError("x")) and not is_user_error(TypeError("x"))


def test_model_options_are_named_as_flags():
    from recotorch.cli import checks
    from recotorch.errors import OptionError
    from recotorch.models import MODELS

    with pytest.raises(OptionError, match="--model bias does not take --n-neg"):
        checks.check_model_takes("bias", {"n_neg": 3}, MODELS)
    with pytest.raises(OptionError, match=r"^--batch-size: must be > 0"):
        checks.check_values({"batch_size": 0})
    with pytest.raises(OptionError, match=r"^--weight-decay"):
        checks.check_values({"weight_decay": float("nan")})
    checks.check_values({"dim": 8, "lr": 1e-3, "reg": 0.0, "device": "cpu", "half_life": 0.2})


def test_only_recotorchs_checkpoint_files_are_removed(tmp_path):
    from recotorch.cli.targets import checkpoint_target, is_checkpoint_dir, remove_checkpoint
    from recotorch.errors import OutputPathError

    ours = tmp_path / "m.checkpoint"
    ours.mkdir()
    (ours / "checkpoint.pt").write_bytes(b"x")
    (ours / "checkpoint.tmp123").write_bytes(b"x")
    assert is_checkpoint_dir(ours) and checkpoint_target(tmp_path / "m") == ours
    remove_checkpoint(ours)
    assert not ours.exists()
    mixed = tmp_path / "n.checkpoint"
    mixed.mkdir()
    (mixed / "checkpoint.pt").write_bytes(b"x")
    (mixed / "thesis.tex").write_text("mine")
    assert not is_checkpoint_dir(mixed)
    with pytest.raises(OutputPathError, match=r"n\.checkpoint"):
        checkpoint_target(tmp_path / "n")
    remove_checkpoint(mixed)  # even when asked, only recotorch's file goes
    assert (mixed / "thesis.tex").read_text() == "mine" and not (mixed / "checkpoint.pt").exists()


def test_version(tmp_path, capsys, monkeypatch):
    import recotorch

    proc = run_cli_in_process(["--version"], tmp_path, capsys, monkeypatch)
    assert proc.returncode == 0 and proc.stdout.strip() == f"recotorch {recotorch.__version__}"
