"""The tuner through the CLI on ml-100k: `fit --model auto --budget B` on the rating bench split (random
80/20, seed 0) and `tune --task ranking --budget B` on the top-N bench split (ratings >= 4, each user's
latest 20% as test). The search sees only the train file; the test file is scored afterwards.
Prints a table and writes benchmarks/results/tune.{json,md} with the machine and its load.

    python benchmarks/tune.py [--budget 300] [--threads 1] [--tasks rating,ranking]

A task left out of --tasks keeps its row (and leaderboard) from the previous results file; each row
carries the date and load average of its own run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import machine, ml100k_dir, write_results


def _run(args: list[str], threads: int) -> tuple[float, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    subprocess.run([sys.executable, "-m", "recotorch", "-q", *args], check=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - tic, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tasks", default="rating,ranking", help="which searches to run (others are kept)")
    opts = parser.parse_args()
    tasks = set(opts.tasks.split(","))
    previous = _previous()
    import torch

    torch.set_num_threads(opts.threads)
    from recotorch.data.movielens import load_movielens

    data = load_movielens(ml100k_dir())
    rows, boards = [], {}
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="recotorch-tune-bench-"))  # kept: the searches' reports stay readable
    print(f"searches in {root}", file=sys.stderr)
    if "rating" in tasks:
        rows.append(_rating(data, root, opts, boards))
    elif "rating" in previous:
        rows.append(previous["rating"][0])
        boards["rating"] = previous["rating"][1]
    if "ranking" in tasks:
        rows.append(_ranking(data, root, opts, boards))
    elif "ranking" in previous:
        rows.append(previous["ranking"][0])
        boards["ranking"] = previous["ranking"][1]
    info = machine()
    info["threads"] = opts.threads
    info["load_average"] = {"before": load_before, "after": os.getloadavg()}
    columns = ["split", "command", "chosen", "trials", "valid", "test", "wall s", "cpu s", "run at (load)"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    md = (f"# Tuner benchmark (ml-100k, through the CLI)\n\nMachine: {info['cpu']}, {info['cores']} cores, "
          f"{opts.threads} thread(s) per search, torch {info['torch']}; each row's date and load average "
          "(1-minute, before and after its search) are in its last column (a shared machine: the budget buys "
          "fewer trials under load).\n\nThe search reads only the train file; its validation "
          "split is carved from it (docs/tuning.md); the test file is scored once, afterwards.\n\n"
          + "\n".join(lines) + "\n")
    for task, board in boards.items():
        md += f"\nTop of the {task} leaderboard (validation):\n\n" + board + "\n"
    print(md)
    write_results("tune", {"machine": info, "budget_s": opts.budget, "rows": rows, "leaderboards": boards}, md)


def _previous() -> dict[str, tuple[dict, str]]:
    """{task: (row, leaderboard)} from the last results file (for the tasks not re-run)."""
    path = Path(__file__).resolve().parent / "results" / "tune.json"
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    out = {}
    for row in old.get("rows", []):
        task = "rating" if "(rating)" in row["split"] else "ranking"
        if "run at (load)" not in row:
            before, after = old["machine"]["load_average"]["before"][0], old["machine"]["load_average"]["after"][0]
            row["run at (load)"] = f"{old['machine']['date'][:16]} ({before:.1f}-{after:.1f})"
        out[task] = (row, old.get("leaderboards", {}).get(task, ""))
    return out


def _stamp(before: float) -> str:
    from datetime import datetime, timezone

    return f"{datetime.now(timezone.utc).isoformat()[:16]} ({before:.1f}-{os.getloadavg()[0]:.1f})"


def _rating(data, root: Path, opts: argparse.Namespace, boards: dict[str, str]) -> dict:
    """`fit --model auto` on the rating bench split; its row (test RMSE scored after the search)."""
    from recotorch.artifacts import load
    from recotorch.data import splits
    from recotorch.evaluate.protocol import rating_metrics

    before = os.getloadavg()[0]
    rating = splits.random(data, test_frac=0.2, seed=0)
    rating.train.to_frame().write_csv(root / "train.csv")
    wall, cpu = _run(["fit", str(root / "train.csv"), "--model", "auto", "--budget", str(opts.budget),
                      "--out", str(root / "auto")], opts.threads)
    rec = json.loads((root / "auto.tune" / "search.json").read_text())
    boards["rating"] = _top(root / "auto.tune")
    test = rating_metrics(load(root / "auto"), rating.test)
    return {"split": "ml-100k random 80/20 (rating)", "command": f"fit --model auto --budget {opts.budget:g}",
            "chosen": f"{rec['best']['model']} {rec['best']['params']}", "trials": rec["trials"],
            "valid": f"RMSE {rec['best']['value']:.4f}", "test": f"RMSE {test['RMSE']:.4f}",
            "wall s": round(wall, 1), "cpu s": round(cpu, 1), "run at (load)": _stamp(before)}


def _ranking(data, root: Path, opts: argparse.Namespace, boards: dict[str, str]) -> dict:
    """`tune --task ranking` on the top-N bench split; its row (test NDCG scored after the search)."""
    from recotorch.artifacts import load
    from recotorch.evaluate.ranking import ranking_metrics_for, ranking_split

    before = os.getloadavg()[0]
    top = ranking_split(data)
    top.train.to_frame().drop("rating").write_csv(root / "pos.csv")
    wall, cpu = _run(["tune", str(root / "pos.csv"), "--task", "ranking", "--budget", str(opts.budget),
                      "--out", str(root / "rank")], opts.threads)
    rec = json.loads((root / "rank" / "search.json").read_text())
    boards["ranking"] = _top(root / "rank")
    metrics = ranking_metrics_for(load(root / "rank" / "model"), top.test, ks=(10, 20))[0]
    return {"split": "ml-100k top-N (latest 20% of positives)",
            "command": f"tune --task ranking --budget {opts.budget:g}",
            "chosen": f"{rec['best']['model']} {rec['best']['params']}", "trials": rec["trials"],
            "valid": f"NDCG@20 {rec['best']['value']:.4f}",
            "test": f"NDCG@10 {metrics['ndcg@10']:.4f}, NDCG@20 {metrics['ndcg@20']:.4f}",
            "wall s": round(wall, 1), "cpu s": round(cpu, 1), "run at (load)": _stamp(before)}


def _top(folder: Path, n: int = 6) -> str:
    """The first rows of a search's leaderboard as a Markdown table."""
    import polars as pl

    board = pl.read_csv(folder / "leaderboard.csv").head(n)
    metric = board.columns[4]
    lines = [f"| trial | model | settings | {metric} | fit s |", "|---:|---|---|---:|---:|"]
    for r in board.iter_rows(named=True):
        value = "" if r[metric] is None else f"{r[metric]:.4f}"
        fit = "" if r["fit_s"] is None else f"{r['fit_s']:.1f}"
        lines.append(f"| {r['trial']} | {r['model']} | {r['settings']} | {value} | {fit} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
