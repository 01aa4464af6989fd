"""The CLI reads files with the Python readers, and a model directory remembers how its data was read.

Real files built from MovieLens-100k's `u.data` (headerless, tab-separated) in tmp_path: the
headerless round trip of the README (fit with positional columns, then predict with no column
flags), .txt/.data TSVs, a gzip'd JSON Lines review log, split keeping the input's layout, the
train/test overlap warning of `evaluate`, old model directories without a schema, flags that
override the stored schema. In-process through `recotorch.cli.main`, plus one real process.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

import recotorch as rt
from recotorch.artifacts import read_file, resolve_version
from recotorch.data.interactions import Interactions
from recotorch.data.schema import SCHEMA_FILE, FileSchema
from recotorch.models import make_model
from tests.test_cli_errors import run_cli, run_cli_in_process

pytestmark = pytest.mark.usefixtures("one_thread")
N_ROWS = 3000  # the first rows of u.data: enough users and items, fast fits


@pytest.fixture(scope="module")
def udata(ml100k_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first N_ROWS lines of u.data, as they are (user, item, rating, timestamp; tabs, no header)."""
    path = tmp_path_factory.mktemp("udata") / "u.data"
    with (ml100k_dir / "u.data").open() as f:
        path.write_text("".join(next(f) for _ in range(N_ROWS)))
    return path


def rows_of(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


@pytest.fixture()
def cli(capsys, monkeypatch):
    def run(*args: str, cwd: Path):
        return run_cli_in_process([str(a) for a in args], cwd, capsys, monkeypatch)
    return run


def schema_of(model_dir: Path) -> FileSchema:
    content = read_file(model_dir, SCHEMA_FILE)
    assert content is not None, "the model directory stores no schema"
    return FileSchema.from_bytes(content)


def fit_headerless(cli, udata: Path, tmp_path: Path, model: str = "bias") -> Path:
    proc = cli("fit", udata, "--no-header", "--sep", "\\t", "--user-col", "0", "--item-col", "1",
               "--rating-col", "2", "--time-col", "3", "--model", model, "--out", tmp_path / "D", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "D"


def test_headerless_tsv_round_trip_needs_no_column_flags_later(cli, udata, tmp_path):
    model_dir = fit_headerless(cli, udata, tmp_path)
    schema = schema_of(model_dir)
    assert (schema.user, schema.item, schema.rating, schema.timestamp) == (0, 1, 2, 3)
    assert schema.sep == "\t" and schema.has_header is False
    pairs = tmp_path / "pairs.tsv"  # the training layout: no header, tabs, extra columns ignored as in fit
    pairs.write_text("".join("\t".join(r) + "\n" for r in rows_of(udata)[:20]))
    proc = cli("predict", model_dir, pairs, "--out", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = pl.read_csv(proc.stdout.encode())
    expected = rows_of(udata)[:20]
    assert got["user"].to_list() == [int(r[0]) for r in expected]
    assert got["item"].to_list() == [int(r[1]) for r in expected]
    assert got["known"].all()
    model = rt.load(model_dir)
    want = model.predict(got["user"], got["item"]).values
    assert got["prediction"].to_numpy() == pytest.approx(want, rel=1e-5)


def test_fit_uses_the_rating_column_of_a_txt_or_data_tsv_with_a_header(cli, udata, tmp_path):
    text = "user\titem\trating\ttimestamp\n" + udata.read_text()
    for name in ("ratings.txt", "ratings.data"):
        (tmp_path / name).write_text(text)
        proc = cli("fit", name, "--model", "mean", "--out", f"m-{name}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        schema = schema_of(tmp_path / f"m-{name}")
        assert schema.sep == "\t" and schema.rating == "rating" and schema.timestamp == "timestamp"
        mean = sum(float(r[2]) for r in rows_of(udata)) / N_ROWS
        # the global mean is the prediction for any pair: the rating column was read, not lost
        assert rt.load(tmp_path / f"m-{name}").predict([-1], [-1]).values[0] == pytest.approx(mean, rel=1e-5)


def test_positional_columns_work_in_a_file_with_a_header_too(cli, udata, tmp_path):
    (tmp_path / "r.tsv").write_text("a\tb\tc\td\n" + udata.read_text())
    proc = cli("fit", "r.tsv", "--user-col", "0", "--item-col", "b", "--rating-col", "2", "--time-col", "",
               "--model", "bias", "--out", "m", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    schema = schema_of(tmp_path / "m")
    assert (schema.user, schema.item, schema.rating, schema.timestamp) == (0, "b", 2, None)


def _reviews(udata: Path, path: Path) -> list[dict]:
    """A review log in the layout of Amazon's (gzip'd JSON Lines, more fields than recotorch reads)."""
    records = [{"overall": float(r[2]), "verified": True, "reviewerID": f"A{r[0]}", "asin": f"B{int(r[1]):05d}",
                "style": {"Format:": "Paperback"}, "reviewText": "fine " * (int(r[0]) % 7),
                "unixReviewTime": int(r[3])} for r in rows_of(udata)]
    with gzip.open(path, "wt") as f:
        for k, rec in enumerate(records):
            f.write(json.dumps(rec) + "\n" + ("\n" if k == 10 else ""))  # one blank line, skipped and counted
    return records


def test_gzipped_json_lines_review_log(cli, udata, tmp_path):
    records = _reviews(udata, tmp_path / "reviews.json.gz")
    proc = cli("fit", "reviews.json.gz", "--format", "jsonl", "--user-col", "reviewerID", "--item-col", "asin",
               "--rating-col", "overall", "--time-col", "unixReviewTime", "--model", "bias", "--out", "m",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "'verified'" in proc.stderr and "not read" in proc.stderr  # unread fields are said, not hidden
    model = rt.load(tmp_path / "m")
    assert model.users_.ids.dtype == pl.String and f"A{rows_of(udata)[0][0]}" in model.users_.ids.to_list()
    schema = schema_of(tmp_path / "m")
    assert schema.format == "jsonl" and schema.user == "reviewerID"
    # later files in the same layout need no flags: JSON Lines pairs named like the log
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps({"asin": r["asin"], "reviewerID": r["reviewerID"]})
                                                  + "\n" for r in records[:5]))
    proc = cli("predict", "m", "pairs.jsonl", "--out", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = pl.read_csv(proc.stdout.encode())
    assert got["user"].to_list() == [r["reviewerID"] for r in records[:5]] and got["known"].all()


def test_a_missing_json_field_is_named_with_the_flag_and_the_closest_field(cli, udata, tmp_path):
    _reviews(udata, tmp_path / "reviews.gz")
    proc = cli("fit", "reviews.gz", "--format", "jsonl", "--user-col", "reviewerId", "--item-col", "asin",
               "--out", "m", cwd=tmp_path)
    assert proc.returncode == 2
    assert "reviews.gz" in proc.stderr and "did you mean 'reviewerID'" in proc.stderr
    assert "--user-col" in proc.stderr and "user=" not in proc.stderr
    assert not (tmp_path / "m").exists()


def test_evaluate_warns_about_test_rows_seen_in_training_and_strict_refuses(cli, udata, tmp_path):
    rows = rows_of(udata)
    train, test = rows[:2500], rows[2000:]  # 500 test rows were trained on
    (tmp_path / "train.tsv").write_text("".join("\t".join(r) + "\n" for r in train))
    (tmp_path / "test.tsv").write_text("".join("\t".join(r) + "\n" for r in test))
    proc = cli("fit", "train.tsv", "--no-header", "--user-col", "0", "--item-col", "1", "--rating-col", "2",
               "--time-col", "3", "--model", "bias", "--out", "m", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    trained = {(r[0], r[1]) for r in train}
    overlap = sum((r[0], r[1]) in trained for r in test)
    assert overlap >= 500
    proc = cli("evaluate", "m", "test.tsv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"{overlap:,} of the {len(test):,} (user, item) pairs of test.tsv" in proc.stderr
    assert "warning" in proc.stderr
    proc = cli("evaluate", "m", "test.tsv", "--strict", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and f"{overlap:,} of the {len(test):,}" in proc.stderr


def test_split_keeps_the_layout_and_its_test_file_evaluates_without_overlap(cli, udata, tmp_path):
    proc = cli("split", udata, "--no-header", "--user-col", "0", "--item-col", "1", "--rating-col", "2",
               "--time-col", "3", "--out", "s", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    train, test = tmp_path / "s" / "train.data", tmp_path / "s" / "test.data"
    first = rows_of(train)[0]
    assert len(first) == 4 and first[0].isdigit()  # no header line, tabs, the same column positions
    cold = tmp_path / "s" / "cold.data"
    assert len(rows_of(train)) + len(rows_of(test)) + len(rows_of(cold)) == N_ROWS  # every row, once
    fit_args = ["fit", str(train), "--no-header", "--user-col", "0", "--item-col", "1", "--rating-col", "2",
                "--time-col", "3", "--model", "bias", "--out", "m"]
    assert cli(*fit_args, cwd=tmp_path).returncode == 0
    proc = cli("evaluate", "m", test, "--strict", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "RMSE" in proc.stdout and "warning" not in proc.stderr


def test_flags_override_the_stored_schema(cli, udata, tmp_path):
    model_dir = fit_headerless(cli, udata, tmp_path)
    first = rows_of(udata)[:3]
    (tmp_path / "pairs.csv").write_text("item,who\n" + "".join(f"{r[1]},{r[0]}\n" for r in first))
    proc = cli("predict", model_dir, "pairs.csv", "--header", "--user-col", "who", "--item-col", "item",
               "--out", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = pl.read_csv(proc.stdout.encode())
    assert got["user"].to_list() == [int(r[0]) for r in first] and got["known"].all()
    # a header line in a file read without one (as the model's training file) is said, not answered
    (tmp_path / "named.tsv").write_text("user\titem\n" + "".join(f"{r[0]}\t{r[1]}\n" for r in first))
    proc = cli("predict", model_dir, "named.tsv", "--out", "-", cwd=tmp_path)
    assert proc.returncode == 2 and "named.tsv, line 1" in proc.stderr and "--header" in proc.stderr
    proc = cli("predict", model_dir, "named.tsv", "--header", "--out", "-", cwd=tmp_path)
    assert proc.returncode == 0 and pl.read_csv(proc.stdout.encode())["known"].all()


def test_recommend_users_file_is_read_like_the_training_file(cli, udata, tmp_path):
    model_dir = fit_headerless(cli, udata, tmp_path, model="pop")
    users = sorted({r[0] for r in rows_of(udata)[:50]})[:3]
    (tmp_path / "who.tsv").write_text("".join(f"{u}\tx\n" for u in users))
    proc = cli("recommend", model_dir, "--users", "who.tsv", "--k", "2", "--out", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = pl.read_csv(proc.stdout.encode())
    assert sorted(set(got["user"].to_list())) == sorted(int(u) for u in users)


def test_a_model_directory_without_a_schema_uses_the_defaults(cli, udata, tmp_path):
    frame = pl.read_csv(udata, separator="\t", has_header=False, new_columns=["user", "item", "rating", "timestamp"])
    make_model("bias").fit(Interactions.from_frame(frame)).save(tmp_path / "old")  # saved without a schema
    assert read_file(tmp_path / "old", SCHEMA_FILE) is None
    (tmp_path / "pairs.csv").write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in frame.select(
        "user", "item").head(4).iter_rows()))
    proc = cli("predict", "old", "pairs.csv", "--out", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert pl.read_csv(proc.stdout.encode())["known"].all()


def test_the_schema_is_checksummed_and_kept_by_a_later_save(cli, udata, tmp_path):
    model_dir = fit_headerless(cli, udata, tmp_path)
    model = rt.load(model_dir)
    model.save(tmp_path / "copy")  # a loaded model saved again keeps the files stored with it
    assert schema_of(tmp_path / "copy") == schema_of(model_dir)
    stored = resolve_version(model_dir) / SCHEMA_FILE
    stored.write_text(stored.read_text().replace('"user": 0', '"user": 1'))
    proc = cli("predict", model_dir, udata, "--out", "-", cwd=tmp_path)
    assert proc.returncode == 2 and "schema.json" in proc.stderr and "SHA-256" in proc.stderr


@pytest.mark.slow  # a real process for each verb (~2 s of CPU each, mostly importing torch)
def test_the_real_process_round_trip(udata, tmp_path):
    proc = run_cli("fit", str(udata), "--no-header", "--sep", "\\t", "--user-col", "0", "--item-col", "1",
                   "--rating-col", "2", "--time-col", "3", "--model", "mf", "--epochs", "1", "--out", "D",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "pairs.tsv").write_text("".join(f"{r[0]}\t{r[1]}\n" for r in rows_of(udata)[:5]))
    proc = run_cli("predict", "D", "pairs.tsv", "--out", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = pl.read_csv(proc.stdout.encode())
    assert got.columns[:3] == ["user", "item", "prediction"] and got.height == 5 and got["known"].all()
