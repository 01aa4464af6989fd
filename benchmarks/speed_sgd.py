"""Speed jobs for the SGD-trained factor models, merged into `benchmarks/speed.py` (EXTRA_JOB_MODULES).

    python benchmarks/speed.py --jobs bpr,mf [--repeats 3] [--threads 2]   # into results/speed.{md,json}
    python benchmarks/speed_sgd.py [--jobs bpr,mf] [--repeats 3] [--quick]    # alone: results/speed_sgd.*

- `bpr`: BPR on ml-100k implicit, the top-N benchmark split of `recotorch.evaluate.ranking.ranking_split`
  (ratings >= 4 are positives; each user's latest 20% by timestamp are test, 5+ positives needed):
  recotorch's `bpr` at its defaults (the compiled step) against implicit's BayesianPersonalizedRanking at
  its defaults, both reading the same train.csv and writing top-10 for the test users; NDCG@10 of what
  they wrote, computed by the same code. With `--quick` the CLI round trip is skipped.
- `mf`: rating prediction on the 80/20 random split of ml-100k (`splits.random(seed=0)`, 80,000 train
  rows; test pairs with an unseen user or item dropped): the process `recotorch fit --model mf` with
  defaults (its RMSE from an untimed `recotorch predict`), the same model through the Python API in one
  process (read, fit, predict, write), and Surprise's SVD at its defaults (the same steps); RMSE of
  what they wrote.

Each job takes well under a minute per round on 2 cores (the data are written once per run).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ml100k_dir
from speed import (
    Context,
    Row,
    _threads,
    _version,
    build_in_child,
    child,
    implicit_fit_recommend,
    ndcg_at_k,
    paired,
    read_recs,
    run_jobs,
)

TOP = 10


# ---- data ---------------------------------------------------------------------------------------
def _ranking_data(ctx: Context) -> tuple[Path, dict[int, set[int]]]:
    """train.csv (user,item) and test_users.csv of the top-N split; returns the test truth."""
    work = ctx.work / "ml100k_implicit"
    if not (work / "truth.json").exists():
        build_in_child("ranking-data", work)
    raw = json.loads((work / "truth.json").read_text())
    return work, {int(u): set(s) for u, s in raw.items()}


def _child_ranking_data(args: list[str]) -> dict[str, Any]:
    import polars as pl

    from recotorch.data.movielens import load_movielens
    from recotorch.evaluate.ranking import ranking_split

    work = Path(args[0])
    work.mkdir(parents=True, exist_ok=True)
    split = ranking_split(load_movielens(ml100k_dir()))
    split.train.to_frame().select("user", "item").write_csv(work / "train.csv")
    test = split.test.to_frame()
    truth: dict[int, set[int]] = {}
    for u, i in zip(test["user"].to_list(), test["item"].to_list(), strict=True):
        truth.setdefault(int(u), set()).add(int(i))
    pl.DataFrame({"user": sorted(truth)}).write_csv(work / "test_users.csv")
    (work / "truth.json").write_text(json.dumps({str(u): sorted(s) for u, s in truth.items()}))
    return {"test_users": len(truth)}


def _rating_data(ctx: Context) -> tuple[Path, np.ndarray]:
    """train.csv (user,item,rating), test_pairs.csv (user,item); returns the test ratings in file order."""
    work = ctx.work / "ml100k_80k"
    if not (work / "test_ratings.npy").exists():
        build_in_child("rating-data", work)
    return work, np.load(work / "test_ratings.npy")


def _child_rating_data(args: list[str]) -> dict[str, Any]:
    from recotorch.data import splits
    from recotorch.data.movielens import load_movielens

    work = Path(args[0])
    work.mkdir(parents=True, exist_ok=True)
    split = splits.random(load_movielens(ml100k_dir()), test_frac=0.2, seed=0)
    split.train.to_frame().select("user", "item", "rating").write_csv(work / "train.csv")
    test = split.test.to_frame()
    test.select("user", "item").write_csv(work / "test_pairs.csv")
    np.save(work / "test_ratings.npy", test["rating"].to_numpy())
    return {"test_pairs": test.height}


# ---- children -----------------------------------------------------------------------------------
def _child_bpr_recotorch(args: list[str]) -> dict[str, Any]:
    """recotorch's BPR through the Python API: read, fit, top-10 for the test users, write."""
    data, out = Path(args[0]), Path(args[1])
    import polars as pl
    import torch

    from recotorch.data.interactions import Interactions
    from recotorch.models import make_model

    torch.set_num_threads(_threads())
    model = make_model("bpr")
    model.prepare_fit()  # as `recotorch fit` does, before reading the data
    train = Interactions.from_frame(pl.read_csv(data / "train.csv"), rating=None, timestamp=None)
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(train)
    fit_s, fit_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    users = pl.read_csv(data / "test_users.csv")["user"].to_list()
    model.recommend(users, k=TOP).to_frame().select("user", "item", "rank").write_csv(out)
    return {"fit_s": fit_s, "fit_cpu_s": fit_cpu_s}


def _child_bpr_implicit(args: list[str]) -> dict[str, Any]:
    """implicit's BPR the way its docs use it: a users x items CSR, fit, recommend with liked items filtered."""
    data, out = Path(args[0]), Path(args[1])
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    model = BayesianPersonalizedRanking(num_threads=_threads(), random_state=0)
    return implicit_fit_recommend(model, data, "train.csv", out, TOP)


def _child_mf_recotorch(args: list[str]) -> dict[str, Any]:
    """recotorch's MF (defaults) through the Python API: read, fit, predict the test pairs, write."""
    data, out = Path(args[0]), Path(args[1])
    import polars as pl
    import torch

    import recotorch as rt

    torch.set_num_threads(_threads())
    model = rt.MatrixFactorization()
    train = rt.read_interactions(data / "train.csv", user="user", item="item", rating="rating", timestamp=None)
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(train)
    fit_s, fit_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    pairs = pl.read_csv(data / "test_pairs.csv")
    pred = model.predict(pairs["user"].to_list(), pairs["item"].to_list())
    pairs.with_columns(prediction=np.asarray(pred.values)).write_csv(out)
    return {"fit_s": fit_s, "fit_cpu_s": fit_cpu_s}


def _child_mf_surprise(args: list[str]) -> dict[str, Any]:
    """Surprise's SVD at its defaults: load the CSV, fit on all of it, predict every test pair, write."""
    data, out = Path(args[0]), Path(args[1])
    import polars as pl
    from surprise import SVD, Dataset, Reader

    reader = Reader(line_format="user item rating", sep=",", skip_lines=1, rating_scale=(1, 5))
    trainset = Dataset.load_from_file(str(data / "train.csv"), reader=reader).build_full_trainset()
    algo = SVD(random_state=0)
    start, cpu = time.perf_counter(), time.process_time()
    algo.fit(trainset)
    fit_s, fit_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    pairs = pl.read_csv(data / "test_pairs.csv")
    preds = [algo.predict(str(u), str(i)).est for u, i in zip(pairs["user"].to_list(), pairs["item"].to_list(),
                                                             strict=True)]
    pairs.with_columns(prediction=np.asarray(preds)).write_csv(out)
    return {"fit_s": fit_s, "fit_cpu_s": fit_cpu_s}


CHILDREN = {"ranking-data": _child_ranking_data, "rating-data": _child_rating_data,
            "bpr-recotorch": _child_bpr_recotorch, "bpr-implicit": _child_bpr_implicit,
            "mf-recotorch": _child_mf_recotorch, "mf-surprise": _child_mf_surprise}


# ---- jobs ---------------------------------------------------------------------------------------
def job_bpr(ctx: Context) -> list[Row]:
    """BPR on ml-100k implicit (time split): recotorch (API, CLI) vs implicit, each at its defaults."""
    work, truth = _ranking_data(ctx)
    out = {lib: work / f"recs_{n}.csv" for n, lib in enumerate(("recotorch", "recotorch CLI", "implicit"))}
    cli, model_dir = [sys.executable, "-m", "recotorch"], work / "bpr_model"
    commands = {
        "recotorch": [child("bpr-recotorch", str(work), str(out["recotorch"]))],
        "recotorch CLI": [[*cli, "fit", str(work / "train.csv"), "--model", "bpr", "--out", str(model_dir)],
                          [*cli, "recommend", str(model_dir), "--users", str(work / "test_users.csv"), "--k",
                           str(TOP), "--out", str(out["recotorch CLI"]), "--overwrite"]],
        "implicit": [child("bpr-implicit", str(work), str(out["implicit"]))],
    }
    if ctx.quick:
        del commands["recotorch CLI"]
    notes = {"recotorch": "BPRMF defaults (dim 64, 4 negatives, row-wise Adagrad, compiled step)",
             "recotorch CLI": "`recotorch fit --model bpr` + `recotorch recommend --k 10` (two processes)",
             "implicit": f"implicit {_version('implicit')} BayesianPersonalizedRanking defaults (100 factors, "
                         "100 iterations)"}
    score = lambda lib: f"NDCG@{TOP} {ndcg_at_k(read_recs(out[lib]), truth, TOP):.4f}"  # noqa: E731
    rows = paired(ctx, "bpr", commands, score, notes)
    for r in rows:
        r["data"] = ("ml-100k, ratings >= 4 as positives, each user's latest 20% by time as test "
                     "(recotorch.evaluate.ranking.ranking_split); top-10 over the catalogue, training items excluded")
    return rows


def job_mf(ctx: Context) -> list[Row]:
    """MF for ratings on the 80k ml-100k split: `recotorch fit --model mf` defaults vs Surprise's SVD."""
    work, truth = _rating_data(ctx)
    out = {lib: work / f"pred_{n}.csv" for n, lib in enumerate(("recotorch CLI fit", "recotorch", "surprise"))}
    cli, model_dir = [sys.executable, "-m", "recotorch"], work / "mf_model"
    commands = {  # the CLI row times the fit process alone (the bar); its predictions are made untimed, for RMSE
        "recotorch CLI fit": [[*cli, "fit", str(work / "train.csv"), "--model", "mf", "--out", str(model_dir)]],
        "recotorch": [child("mf-recotorch", str(work), str(out["recotorch"]))],
        "surprise": [child("mf-surprise", str(work), str(out["surprise"]))],
    }
    notes = {"recotorch CLI fit": "`recotorch fit --model mf` (defaults): read, fit, save the model directory",
             "recotorch": "MatrixFactorization() defaults in one process (read, fit, predict, write)",
             "surprise": f"scikit-surprise {_version('scikit-surprise')} SVD defaults (100 factors, 20 epochs): "
                         "read, fit, predict, write"}

    def score(lib: str) -> str:
        import subprocess

        import polars as pl

        if lib == "recotorch CLI fit":
            subprocess.run([*cli, "predict", str(model_dir), str(work / "test_pairs.csv"), "--out", str(out[lib]),
                            "--overwrite"], check=True, capture_output=True)
        pred = pl.read_csv(out[lib])["prediction"].to_numpy()
        return f"RMSE {float(np.sqrt(np.mean((pred - truth) ** 2))):.4f}"

    rows = paired(ctx, "mf", commands, score, notes)
    for r in rows:
        r["data"] = ("ml-100k u.data, random 80/20 split (recotorch.data.splits.random, seed 0): 80,000 train "
                     f"rows, {len(truth):,} test pairs with a known user and item")
    return rows


JOBS = {"bpr": job_bpr, "mf": job_mf}


def main() -> None:
    """Run these jobs on their own and write benchmarks/results/speed_sgd.{json,md} (speed.py's own file is
    left to `speed.py`, which runs them too)."""
    import argparse
    import os
    import tempfile

    from _common import RESULTS
    from speed import _markdown, _print_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated, of: {', '.join(JOBS)}")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of each A/B pair")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads per child process")
    parser.add_argument("--quick", action="store_true", help="skip the CLI round trip of the bpr job")
    opts = parser.parse_args()
    payload: dict[str, Any] = {"jobs": {}}
    with tempfile.TemporaryDirectory(prefix="recotorch-speed-sgd-") as tmp:
        ctx = Context(Path(tmp), opts.repeats, opts.threads, opts.quick)
        rows_all = run_jobs(ctx, JOBS, [j for j in opts.jobs.split(",") if j], payload)
    _print_table(rows_all)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "speed_sgd.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / "speed_sgd.md").write_text(_markdown(payload))
    print(f"\nwrote {RESULTS / 'speed_sgd.json'} and {RESULTS / 'speed_sgd.md'}")


if __name__ == "__main__":
    main()
