"""Speed against the specialised libraries: whole processes, paired A/B, alternating order.

    python benchmarks/speed.py [--jobs als,ease] [--repeats 3] [--threads N] [--quick]

Prints a table and writes benchmarks/results/speed.md/.json (rows of the jobs run now replace
their old rows; other jobs' rows are kept), with the machine, thread count and load average.

How it is organised (the registry)
----------------------------------
- `JOBS: dict[str, Callable[[Context], list[Row]]]`: job name -> function returning result rows.
  A `Row` is a dict with: job, library, fit_s (the fit as measured inside the process), whole_s
  (wall seconds of the whole process(es): start-up, reading, fitting, top-k, writing), cpu_s
  (their user+system CPU), peak_rss_mb, quality (e.g. "NDCG@20 0.1234") and notes.
- A job builds its data once under `ctx.work`, then calls `paired(ctx, job, {library: [argv, ...]},
  score)`: every library's commands run as fresh subprocesses `ctx.repeats` times, the order of the
  libraries alternating between rounds (A B, B A, ...), and the medians become the rows. `score`
  computes the quality from what the child wrote, so every library is scored by the same code.
- A child is `python benchmarks/speed.py --child NAME ARG...`: `CHILDREN[NAME](args)` does the
  work and returns a dict with at least fit_s; it is printed as JSON on the child's last line.
- Jobs in other files: a module in benchmarks/ with its own `JOBS` (and `CHILDREN`) dicts is merged
  in by adding its name to `EXTRA_JOB_MODULES` below (one line). Such a module may import helpers
  from this file (`from speed import Context, paired, ndcg_at_k, CHILD_ENV`); nothing runs on import.

Threads: `--threads N` (default: all cores) is given to every child through OMP/MKL/OpenBLAS/Numba
environment variables and to implicit's `num_threads`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine

Row = dict[str, Any]
EXTRA_JOB_MODULES: tuple[str, ...] = ("speed_sgd",)  # modules with their own JOBS / CHILDREN
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
K = 20
FITTED = re.compile(r"^fitted .*?\sin ([0-9.]+) s", re.MULTILINE | re.DOTALL)  # the line may wrap before "in"
POP_EXPONENT = 0.78  # Zipf exponent of artist popularity (gives ~15.4k distinct train artists)


@dataclass
class Context:
    work: Path  # scratch directory for data and outputs
    repeats: int
    threads: int
    quick: bool


def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({v: str(threads) for v in THREAD_VARS})
    env["RECOTORCH_BENCH_THREADS"] = str(threads)
    return env


def run_child(argv: list[str], threads: int) -> dict[str, Any]:
    """One whole process: its JSON report plus wall seconds, CPU seconds and peak RSS (from wait4)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=child_env(threads))
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{text[-3000:]}")
    last = [line for line in text.splitlines() if line.startswith("{")]
    report = json.loads(last[-1]) if last else {}
    if printed := FITTED.search(text):  # `recotorch fit` prints "fitted MODEL on ... in 1.23 s -> DIR"
        report.setdefault("fit_s", float(printed.group(1)))
    return {**report, "whole_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def child(name: str, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", name, *args]


def build_in_child(name: str, work: Path) -> None:
    """Run the data-building child `name` on `work`. Data is built in a child, not here, because Linux
    passes this process's peak memory on to every later child's ru_maxrss (at fork or vfork + exec):
    building it here (or importing torch here) would floor the peak-RSS column of every child."""
    subprocess.run(child(name, str(work)), check=True, stdout=subprocess.DEVNULL)


def paired(ctx: Context, job: str, commands: dict[str, list[list[str]]], score: Callable[[str], str],
           notes: dict[str, str] | None = None, repeats: int | None = None) -> list[Row]:
    """Run each library's commands (one or more processes) `repeats` times, alternating the order."""
    runs: dict[str, list[dict[str, Any]]] = {lib: [] for lib in commands}
    libs = list(commands)
    for round_ in range(repeats or ctx.repeats):
        for lib in libs if round_ % 2 == 0 else libs[::-1]:
            parts = [run_child(argv, ctx.threads) for argv in commands[lib]]
            fit = [p["fit_s"] for p in parts if "fit_s" in p]
            fit_cpu = [p["fit_cpu_s"] for p in parts if "fit_cpu_s" in p]
            runs[lib].append({"fit_s": sum(fit) if fit else float("nan"),
                              "fit_cpu_s": sum(fit_cpu) if fit_cpu else float("nan"),
                              "whole_s": sum(p["whole_s"] for p in parts), "cpu_s": sum(p["cpu_s"] for p in parts),
                              "peak_rss_mb": max(p["peak_rss_mb"] for p in parts)})
            print(f"  {job} {lib} round {round_ + 1}: fit {runs[lib][-1]['fit_s']:.2f} s, "
                  f"whole {runs[lib][-1]['whole_s']:.2f} s", flush=True)
    rows = []
    for lib in libs:
        med = {key: statistics.median(r[key] for r in runs[lib]) for key in ("fit_s", "fit_cpu_s", "whole_s", "cpu_s")}
        rows.append({"job": job, "library": lib, **{k: round(v, 3) for k, v in med.items()},
                     "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs[lib]), 1),
                     "quality": score(lib), "runs": len(runs[lib]), "notes": (notes or {}).get(lib, "")})
    return rows


# ---- a play-count log shaped like Last.fm hetrec-2011 ------------------------------------------
def play_counts(n_users: int = 1892, n_items: int = 17632, per_user: int = 49, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, plays): each user's `per_user` distinct artists, heavy-tailed counts.

    Artists have Zipf-like popularity and positions in 24 taste clusters; users pick artists by
    popularity x taste (Gumbel top-k); play counts are log-normal (median ~250, mean ~700, max
    ~1e5 like hetrec), larger for artists closer to the user's taste, so counts carry some signal.
    """
    rng = np.random.default_rng(seed)
    clusters = 24
    item_cluster = rng.integers(0, clusters, n_items)
    item_pop = -POP_EXPONENT * np.log(np.arange(1, n_items + 1))[rng.permutation(n_items)]
    user_taste = rng.dirichlet(np.full(clusters, 0.15), n_users)  # a few favourite clusters per user
    affinity = np.log(user_taste[:, item_cluster] + 1e-4)  # (users, items)
    logits = item_pop[None, :] + 1.5 * affinity
    gumbel = rng.gumbel(size=logits.shape)
    chosen = np.argpartition(-(logits + gumbel), per_user, axis=1)[:, :per_user]
    users = np.repeat(np.arange(n_users), per_user)
    items = chosen.ravel()
    z = affinity[users, items]
    z = (z - z.mean()) / z.std()
    plays = np.ceil(np.exp(rng.normal(5.5 + 0.4 * z, 1.3))).astype(np.int64)
    return users, items, plays


def split(users: np.ndarray, items: np.ndarray, plays: np.ndarray, test_frac: float = 0.2, seed: int = 1
          ) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, test): a random `test_frac` of each user's artists is held out."""
    rng = np.random.default_rng(seed)
    test = rng.random(users.size) < test_frac
    return ~test, test


def ndcg_at_k(recs: dict[Any, list[Any]], truth: dict[Any, set[Any]], k: int = K) -> float:
    """Mean binary NDCG@k over the users of `truth` (a user without recommendations scores 0)."""
    total = 0.0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for user, relevant in truth.items():
        got = recs.get(user, [])[:k]
        dcg = sum(discounts[r] for r, item in enumerate(got) if item in relevant)
        total += dcg / discounts[: min(len(relevant), k)].sum()
    return total / max(len(truth), 1)


def read_recs(path: Path) -> dict[Any, list[Any]]:
    import polars as pl

    frame = pl.read_csv(path).sort(["user", "rank"])
    out: dict[Any, list[Any]] = {}
    for user, item in zip(frame["user"].to_list(), frame["item"].to_list(), strict=True):
        out.setdefault(user, []).append(item)
    return out


def write_split(work: Path) -> dict[int, set[int]]:
    """train.csv (user,item), train_counts.csv (user,item,plays), test_users.csv; returns the test truth."""
    import polars as pl

    users, items, plays = play_counts()
    train, test = split(users, items, plays)
    # the catalogue is what training saw; test artists nobody trained on cannot be recommended
    known = np.zeros(items.max() + 1, bool)
    known[items[train]] = True
    test &= known[items]
    frame = pl.DataFrame({"user": users[train], "item": items[train], "plays": plays[train]})
    frame.select("user", "item").write_csv(work / "train.csv")
    frame.write_csv(work / "train_counts.csv")
    truth: dict[int, set[int]] = {}
    for u, i in zip(users[test].tolist(), items[test].tolist(), strict=True):
        truth.setdefault(u, set()).add(i)
    pl.DataFrame({"user": sorted(truth)}).write_csv(work / "test_users.csv")
    return truth


def _data_note(work: Path) -> str:
    import polars as pl

    f = pl.read_csv(work / "train_counts.csv")
    return (f"synthetic hetrec-like play counts: {f.height:,} train rows, {f['user'].n_unique():,} users, "
            f"{f['item'].n_unique():,} items, plays median {int(f['plays'].median())}, mean "
            f"{f['plays'].mean():.0f}, max {f['plays'].max():,}")


# ---- children: one library's whole process each ------------------------------------------------
def _threads() -> int:
    return int(os.environ.get("RECOTORCH_BENCH_THREADS", "1"))


def _child_recotorch(args: list[str]) -> dict[str, Any]:
    """recotorch through the Python API: read, fit, top-k for the test users, write."""
    model_name, data, train_file, out = args[0], Path(args[1]), args[2], Path(args[3])
    params = json.loads(args[4]) if len(args) > 4 else {}
    import polars as pl
    import torch

    from recotorch.data.interactions import Interactions
    from recotorch.models import make_model

    torch.set_num_threads(_threads())
    model = make_model(model_name, **params)  # as `recotorch fit` does: the model first, then the data
    model.prepare_fit()
    frame = pl.read_csv(data / train_file)
    rating = "plays" if "plays" in frame.columns else None
    train = Interactions.from_frame(frame, rating=rating, timestamp=None)
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(train)
    fit_s, fit_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    test_users = pl.read_csv(data / "test_users.csv")["user"].to_list()
    model.recommend(test_users, k=K).to_frame().select("user", "item", "rank").write_csv(out)
    return {"fit_s": fit_s, "fit_cpu_s": fit_cpu_s}


def implicit_fit_recommend(model: Any, data: Path, train_file: str, out: Path, k: int) -> dict[str, Any]:
    """An implicit model the way its docs use it: a users x items CSR (of the `plays` column when there is
    one, else ones), fit timed, top-k for the test users with liked items filtered, written as CSV."""
    import polars as pl
    import scipy.sparse as sp

    frame = pl.read_csv(data / train_file)
    u_ids, u = np.unique(frame["user"].to_numpy(), return_inverse=True)
    i_ids, i = np.unique(frame["item"].to_numpy(), return_inverse=True)
    values = frame["plays"].to_numpy().astype(np.float32) if "plays" in frame.columns else np.ones(len(u), np.float32)
    matrix = sp.csr_matrix((values, (u, i)), shape=(len(u_ids), len(i_ids)))
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(matrix, show_progress=False)
    fit_s, fit_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    test_users = pl.read_csv(data / "test_users.csv")["user"].to_numpy()
    rows = np.searchsorted(u_ids, test_users)
    ids, _ = model.recommend(rows, matrix[rows], N=k, filter_already_liked_items=True)
    pl.DataFrame({"user": np.repeat(test_users, k), "item": i_ids[ids.ravel()],
                  "rank": np.tile(np.arange(1, k + 1), len(rows))}).write_csv(out)
    return {"fit_s": fit_s, "fit_cpu_s": fit_cpu_s}


def _child_implicit(args: list[str]) -> dict[str, Any]:
    """implicit's ALS: a users x items CSR of confidences, fit, recommend."""
    data, train_file, out = Path(args[0]), args[1], Path(args[2])
    params = json.loads(args[3]) if len(args) > 3 else {}
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(**params, num_threads=_threads(), random_state=0)
    return implicit_fit_recommend(model, data, train_file, out, K)


def _child_numpy_ease(args: list[str]) -> dict[str, Any]:
    """EASE as the paper writes it (Steck 2019) in numpy float64: G = X^T X + reg I, P = G^-1, B = -P / diag P."""
    data, out, reg = Path(args[0]), Path(args[1]), float(args[2])
    import polars as pl
    import scipy.sparse as sp

    frame = pl.read_csv(data / "train.csv")
    u_ids, u = np.unique(frame["user"].to_numpy(), return_inverse=True)
    i_ids, i = np.unique(frame["item"].to_numpy(), return_inverse=True)
    x = sp.csr_matrix((np.ones(len(u)), (u, i)), shape=(len(u_ids), len(i_ids)))
    start, cpu = time.perf_counter(), time.process_time()
    g = (x.T @ x).toarray()
    g[np.diag_indices_from(g)] += reg
    p = np.linalg.inv(g)
    b = p / -np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    fit_s, fit_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    test_users = pl.read_csv(data / "test_users.csv")["user"].to_numpy()
    rows = np.searchsorted(u_ids, test_users)
    scores = np.asarray(x[rows] @ b)
    scores[x[rows].nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :K]
    pl.DataFrame({"user": np.repeat(test_users, K), "item": i_ids[top.ravel()],
                  "rank": np.tile(np.arange(1, K + 1), len(rows))}).write_csv(out)
    return {"fit_s": fit_s, "fit_cpu_s": fit_cpu_s}


def _child_write_split(args: list[str]) -> dict[str, Any]:
    """The ALS/EASE split under args[0], with truth.json (the test items of each test user)."""
    work = Path(args[0])
    truth = write_split(work)
    (work / "truth.json").write_text(json.dumps({str(u): sorted(s) for u, s in truth.items()}))
    return {"test_users": len(truth)}


CHILDREN: dict[str, Callable[[list[str]], dict[str, Any]]] = {
    "write-split": _child_write_split,
    "recotorch": _child_recotorch,
    "implicit": _child_implicit,
    "numpy-ease": _child_numpy_ease,
}


# ---- jobs ---------------------------------------------------------------------------------------
def _split_dir(ctx: Context) -> tuple[Path, dict[int, set[int]]]:
    work = ctx.work / "lastfm_like"
    if not (work / "truth.json").exists():
        work.mkdir(parents=True, exist_ok=True)
        build_in_child("write-split", work)
    raw = json.loads((work / "truth.json").read_text())
    return work, {int(u): set(s) for u, s in raw.items()}


def _scorer(truth: dict[int, set[int]], files: dict[str, Path]) -> Callable[[str], str]:
    return lambda lib: f"NDCG@{K} {ndcg_at_k(read_recs(files[lib]), truth):.4f}"


def job_als(ctx: Context) -> list[Row]:
    """ALS on binary play events: recotorch (API and CLI) vs implicit, each at its own defaults."""
    work, truth = _split_dir(ctx)
    out = {lib: work / f"recs_{lib}.csv" for lib in ("recotorch", "recotorch CLI", "implicit")}
    model_dir = work / "als_model"
    cli = [sys.executable, "-m", "recotorch"]
    commands = {
        "recotorch": [child("recotorch", "als", str(work), "train.csv", str(out["recotorch"]))],
        "recotorch CLI": [[*cli, "fit", str(work / "train.csv"), "--model", "als", "--out", str(model_dir)],
                          [*cli, "recommend", str(model_dir), "--users", str(work / "test_users.csv"), "--k", str(K),
                           "--out", str(out["recotorch CLI"]), "--overwrite"]],
        "implicit": [child("implicit", str(work), "train.csv", str(out["implicit"]))],
    }
    if ctx.quick:
        del commands["recotorch CLI"]
    notes = {"recotorch": "ImplicitALS defaults (dim 128, reg 30, alpha 8, 10 iterations, CG 3 steps)",
             "recotorch CLI": "`recotorch fit --model als` + `recotorch recommend --k 20` (two processes)",
             "implicit": f"implicit {_version('implicit')} AlternatingLeastSquares defaults (100 factors, 15 "
                         "iterations, CG)"}
    rows = paired(ctx, "als", commands, _scorer(truth, out), notes)
    for r in rows:
        r["data"] = _data_note(work)
    return rows


def job_als_weights(ctx: Context) -> list[Row]:
    """How play counts reach ALS's confidence: binary, raw counts, counts scaled by their mean, log1p."""
    work, truth = _split_dir(ctx)
    import polars as pl

    f = pl.read_csv(work / "train_counts.csv")
    f.with_columns(pl.col("plays").log1p()).write_csv(work / "train_log1p.csv")
    variants = {"binary": ("train.csv", {}),
                "counts, weight_scale=none": ("train_counts.csv", {"weight_scale": "none"}),
                "counts, weight_scale=mean": ("train_counts.csv", {}),
                "log1p(counts), mean": ("train_log1p.csv", {})}
    out = {v: work / f"recs_w{n}.csv" for n, v in enumerate(variants)}
    commands = {v: [child("recotorch", "als", str(work), file, str(out[v]), json.dumps(p))]
                for v, (file, p) in variants.items()}
    rows = paired(ctx, "als-weights", commands, _scorer(truth, out), repeats=1)
    for r in rows:
        r["library"], r["notes"], r["data"] = "recotorch", r["library"], _data_note(work)
    return rows


def job_ease(ctx: Context) -> list[Row]:
    """EASE on the 15k-item catalogue: recotorch vs the paper's numpy code (no pip library has EASE)."""
    work, truth = _split_dir(ctx)
    out = {lib: work / f"recs_ease_{lib}.csv" for lib in ("recotorch", "numpy EASE")}
    commands = {"recotorch": [child("recotorch", "ease", str(work), "train.csv", str(out["recotorch"]))],
                "numpy EASE": [child("numpy-ease", str(work), str(out["numpy EASE"]), "100")]}
    notes = {"recotorch": "EASE(reg=100), float32; users < items: the exact Woodbury route",
             "numpy EASE": "float64 np.linalg.inv, reg 100"}
    rows = paired(ctx, "ease", commands, _scorer(truth, out), notes, repeats=1)
    for r in rows:
        r["data"] = _data_note(work)
    return rows


JOBS: dict[str, Callable[[Context], list[Row]]] = {
    "als": job_als,
    "als-weights": job_als_weights,
    "ease": job_ease,
}


def run_jobs(ctx: Context, jobs: dict[str, Callable[[Context], list[Row]]], names: list[str],
             payload: dict[str, Any]) -> list[Row]:
    """Run each named job, recording its rows, machine, threads and the load before and after in
    `payload["jobs"]`; returns every row."""
    all_rows: list[Row] = []
    for name in names:
        before = os.getloadavg()
        rows = jobs[name](ctx)
        after = os.getloadavg()
        all_rows += rows
        payload["jobs"][name] = {"machine": machine(), "threads": ctx.threads, "repeats": ctx.repeats,
                                 "load_before": [round(x, 2) for x in before],
                                 "load_after": [round(x, 2) for x in after],
                                 "data": rows[0].get("data", "") if rows else "", "rows": rows}
    return all_rows


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _load_extra_jobs() -> None:
    for name in EXTRA_JOB_MODULES:
        module = importlib.import_module(name)
        JOBS.update(module.JOBS)
        CHILDREN.update(getattr(module, "CHILDREN", {}))


# ---- results ------------------------------------------------------------------------------------
def _markdown(payload: dict[str, Any]) -> str:
    lines = ["# Speed against the specialised libraries", "",
             "Whole processes (start-up, reading, fit, top-20 for the test users, writing), paired A/B in "
             "alternating order, medians. fit s / fit cpu s: wall / CPU seconds of the fit measured inside "
             "the process (for the CLI: the seconds it prints); whole s: wall time of the "
             "process(es); cpu s: their user+system CPU. Regenerate: `python benchmarks/speed.py`.", ""]
    for job, info in payload["jobs"].items():
        m = info["machine"]
        lines += [f"## {job}", "", f"{info.get('data', '')}", "",
                  f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {info['threads']} thread(s); "
                  f"load average before/after: {info['load_before']} / {info['load_after']}; {m['date']}.", "",
                  "| library | fit s | fit cpu s | whole s | cpu s | peak RSS MB | quality | runs | notes |",
                  "|---|---:|---:|---:|---:|---:|---|---:|---|"]
        for r in info["rows"]:
            lines.append(f"| {r['library']} | {r['fit_s']:.2f} | {r['fit_cpu_s']:.2f} | {r['whole_s']:.2f} | "
                         f"{r['cpu_s']:.2f} | "
                         f"{r['peak_rss_mb']:.0f} | {r['quality']} | {r['runs']} | {r['notes']} |")
        lines.append("")
    return "\n".join(lines)


def _print_table(rows: list[Row]) -> None:
    print(f"\n{'job':<12} {'library':<28} {'fit s':>7} {'fit cpu':>7} {'whole s':>8} {'cpu s':>7} {'RSS MB':>7}  "
          "quality")
    for r in rows:
        print(f"{r['job']:<12} {r['library']:<28} {r['fit_s']:>7.2f} {r['fit_cpu_s']:>7.2f} {r['whole_s']:>8.2f} "
              f"{r['cpu_s']:>7.2f} "
              f"{r['peak_rss_mb']:>7.0f}  {r['quality']}  {r['notes']}")


def main() -> None:
    _load_extra_jobs()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated, of: {', '.join(JOBS)}")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of each A/B pair (some jobs run once)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads per child process")
    parser.add_argument("--quick", action="store_true", help="fewer variants (skips the CLI round trip)")
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/results alone")
    opts = parser.parse_args()
    names = [j for j in opts.jobs.split(",") if j]
    unknown = [j for j in names if j not in JOBS]
    if unknown:
        parser.error(f"--jobs: unknown {', '.join(unknown)} (known: {', '.join(JOBS)})")
    with tempfile.TemporaryDirectory(prefix="recotorch-speed-") as tmp:
        ctx = Context(opts.work or Path(tmp), opts.repeats, opts.threads, opts.quick)
        ctx.work.mkdir(parents=True, exist_ok=True)
        results_path = RESULTS / "speed.json"
        payload = json.loads(results_path.read_text()) if results_path.exists() else {"jobs": {}}
        all_rows = run_jobs(ctx, JOBS, names, payload)
        _print_table(all_rows)
        if not opts.no_write:
            RESULTS.mkdir(exist_ok=True)
            results_path.write_text(json.dumps(payload, indent=2) + "\n")
            (RESULTS / "speed.md").write_text(_markdown(payload))
            print(f"\nwrote {results_path} and {RESULTS / 'speed.md'}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _load_extra_jobs()
        print(json.dumps(CHILDREN[sys.argv[2]](sys.argv[3:])))
    else:
        main()
