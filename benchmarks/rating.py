"""Rating benchmark: baselines, MF and NeuralCF on ml-100k u1..u5 and a seeded random 80/20 split.

Each model runs in its own process so that its peak memory is its own. Prints a table and
writes benchmarks/results/rating.{json,md}.

    python benchmarks/rating.py [--models mean,bias,mf,ncf]
    python benchmarks/rating.py --one ncf > runs/ncf.json   # one model's row; then --reuse runs/
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import machine, ml100k_dir, peak_rss_mb, write_results

FOLDS = ["u1", "u2", "u3", "u4", "u5"]


def run_one(model_name: str) -> dict:
    """Fit `model_name` on every fold and the random split (in this process)."""
    from recotorch.data import splits
    from recotorch.data.movielens import load_movielens
    from recotorch.evaluate.protocol import rating_metrics
    from recotorch.models import make_model

    data = load_movielens(ml100k_dir())
    cases = {fold: splits.predefined(data, ml100k_dir(), fold) for fold in FOLDS}
    cases["random80/20"] = splits.random(data, test_frac=0.2, seed=0)
    rows = {}
    for case, split in cases.items():
        model = make_model(model_name)
        tic = time.perf_counter()
        model.fit(split.train)
        fit_s = time.perf_counter() - tic
        metrics = rating_metrics(model, split.test)
        rows[case] = {"RMSE": metrics["RMSE"], "MAE": metrics["MAE"], "fit_s": fit_s}
    return {"model": model_name, "cases": rows, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="mean,bias,mf,ncf")
    parser.add_argument("--one", help="run this model only and print its JSON row")
    parser.add_argument("--reuse", type=Path, help="folder of MODEL.json rows printed by --one: used, not re-run")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return
    results = []
    for name in args.models.split(","):
        if args.reuse and (args.reuse / f"{name}.json").exists():
            out = (args.reuse / f"{name}.json").read_text()
        else:
            out = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True,
                                 check=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    header = ("| model | u1..u5 RMSE (mean ± std) | u1..u5 MAE | random 80/20 RMSE | random 80/20 MAE "
              "| fit s (80/20) | peak RSS MB |")
    lines = [header, "|---|---|---|---|---|---|---|"]
    for r in results:
        folds = [r["cases"][f] for f in FOLDS]
        rm = [c["RMSE"] for c in folds]
        ma = [c["MAE"] for c in folds]
        rnd = r["cases"]["random80/20"]
        r["summary"] = {"folds_rmse_mean": statistics.mean(rm), "folds_rmse_std": statistics.stdev(rm),
                        "folds_mae_mean": statistics.mean(ma)}
        lines.append(f"| {r['model']} | {statistics.mean(rm):.4f} ± {statistics.stdev(rm):.4f} | "
                     f"{statistics.mean(ma):.4f} | {rnd['RMSE']:.4f} | {rnd['MAE']:.4f} | {rnd['fit_s']:.2f} | "
                     f"{r['peak_rss_mb']:.0f} |")
    info = machine()
    md = (f"# Rating benchmark (ml-100k)\n\nMachine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
          f"{info['date']}.\nDefault hyper-parameters; each model in its own process.\n\n" + "\n".join(lines) + "\n")
    print(md)
    write_results("rating", {"machine": info, "results": results}, md)


if __name__ == "__main__":
    main()
