"""The tuner through the CLI on ml-100k: `fit --model auto --budget B` on the rating bench split (random
80/20, seed 0) and `tune --task ranking --budget B` on the top-N bench split (ratings >= 4, each user's
latest 20% as test). The search sees only the train file; the test file is scored afterwards.
Prints a table and writes benchmarks/results/tune.{json,md} with the machine and its load.

    python benchmarks/tune.py [--budget 300] [--threads 1]
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
    opts = parser.parse_args()
    import torch

    torch.set_num_threads(opts.threads)
    from recotorch.artifacts import load
    from recotorch.data import splits
    from recotorch.data.movielens import load_movielens
    from recotorch.evaluate.protocol import rating_metrics
    from recotorch.evaluate.ranking import ranking_metrics_for, ranking_split

    data = load_movielens(ml100k_dir())
    rows = []
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="recotorch-tune-bench-"))  # kept: the searches' reports stay readable
    print(f"searches in {root}", file=sys.stderr)
    rating = splits.random(data, test_frac=0.2, seed=0)
    rating.train.to_frame().write_csv(root / "train.csv")
    wall, cpu = _run(["fit", str(root / "train.csv"), "--model", "auto", "--budget", str(opts.budget),
                      "--out", str(root / "auto")], opts.threads)
    rec = json.loads((root / "auto.tune" / "search.json").read_text())
    boards = {"rating": _top(root / "auto.tune")}
    test = rating_metrics(load(root / "auto"), rating.test)
    rows.append({"split": "ml-100k random 80/20 (rating)", "command": f"fit --model auto --budget {opts.budget:g}",
                 "chosen": f"{rec['best']['model']} {rec['best']['params']}", "trials": rec["trials"],
                 "valid": f"RMSE {rec['best']['value']:.4f}", "test": f"RMSE {test['RMSE']:.4f}",
                 "wall s": round(wall, 1), "cpu s": round(cpu, 1)})
    top = ranking_split(data)
    top.train.to_frame().drop("rating").write_csv(root / "pos.csv")
    wall, cpu = _run(["tune", str(root / "pos.csv"), "--task", "ranking", "--budget", str(opts.budget),
                      "--out", str(root / "rank")], opts.threads)
    rec = json.loads((root / "rank" / "search.json").read_text())
    boards["ranking"] = _top(root / "rank")
    metrics = ranking_metrics_for(load(root / "rank" / "model"), top.test, ks=(10, 20))[0]
    rows.append({"split": "ml-100k top-N (latest 20% of positives)",
                 "command": f"tune --task ranking --budget {opts.budget:g}",
                 "chosen": f"{rec['best']['model']} {rec['best']['params']}", "trials": rec["trials"],
                 "valid": f"NDCG@20 {rec['best']['value']:.4f}",
                 "test": f"NDCG@10 {metrics['ndcg@10']:.4f}, NDCG@20 {metrics['ndcg@20']:.4f}",
                 "wall s": round(wall, 1), "cpu s": round(cpu, 1)})
    info = machine()
    info["threads"] = opts.threads
    info["load_average"] = {"before": load_before, "after": os.getloadavg()}
    columns = ["split", "command", "chosen", "trials", "valid", "test", "wall s", "cpu s"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    md = (f"# Tuner benchmark (ml-100k, through the CLI)\n\nMachine: {info['cpu']}, {info['cores']} cores, "
          f"{opts.threads} thread(s) per search, torch {info['torch']}, {info['date']}; load average "
          f"{load_before[0]:.1f} before, {info['load_average']['after'][0]:.1f} after (a shared machine: "
          "the budget buys fewer trials under load).\n\nThe search reads only the train file; its validation "
          "split is carved from it (docs/tuning.md); the test file is scored once, afterwards.\n\n"
          + "\n".join(lines) + "\n")
    for task, board in boards.items():
        md += f"\nTop of the {task} leaderboard (validation):\n\n" + board + "\n"
    print(md)
    write_results("tune", {"machine": info, "budget_s": opts.budget, "rows": rows, "leaderboards": boards}, md)


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
