"""Rating benchmark: baselines, MF, NeuralCF, SVD++, KNNBaseline and the blend on ml-100k u1..u5 and a
seeded random 80/20 split (the bench split), every model at its defaults.

Each model runs in its own process (one torch thread) so that its peak memory is its own; fit CPU
seconds are kept beside the wall seconds, and the load average with the table, since the machine
is shared. Prints a table and writes benchmarks/results/rating.{json,md}.

    python benchmarks/rating.py [--models mean,bias,mf,ncf,svdpp,knn_baseline,blend]
    python benchmarks/rating.py --one ncf > runs/ncf.json   # one model's row; then --reuse runs/
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import machine, ml100k_dir, peak_rss_mb, write_results

FOLDS = ["u1", "u2", "u3", "u4", "u5"]
MODELS = "mean,bias,mf,ncf,svdpp,knn_baseline,blend"


def run_one(model_name: str) -> dict:
    """Fit `model_name` on every fold and the random split (in this process)."""
    import torch

    torch.set_num_threads(1)
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
        tic, cpu = time.perf_counter(), time.process_time()
        model.fit(split.train)
        fit_s, fit_cpu_s = time.perf_counter() - tic, time.process_time() - cpu
        metrics = rating_metrics(model, split.test)
        rows[case] = {"RMSE": metrics["RMSE"], "MAE": metrics["MAE"], "fit_s": fit_s, "fit_cpu_s": fit_cpu_s}
    return {"model": model_name, "cases": rows, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--one", help="run this model only and print its JSON row")
    parser.add_argument("--reuse", type=Path, help="folder of MODEL.json rows printed by --one: used, not re-run")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return
    results = []
    load_before = os.getloadavg()
    for name in args.models.split(","):
        if args.reuse and (args.reuse / f"{name}.json").exists():
            out = (args.reuse / f"{name}.json").read_text()
        else:
            out = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True,
                                 check=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    header = ("| model | u1..u5 RMSE (mean ± std) | u1..u5 MAE | random 80/20 RMSE | random 80/20 MAE "
              "| fit s (80/20) | fit CPU s (80/20) | peak RSS MB |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for r in results:
        folds = [r["cases"][f] for f in FOLDS]
        rm = [c["RMSE"] for c in folds]
        ma = [c["MAE"] for c in folds]
        rnd = r["cases"]["random80/20"]
        r["summary"] = {"folds_rmse_mean": statistics.mean(rm), "folds_rmse_std": statistics.stdev(rm),
                        "folds_mae_mean": statistics.mean(ma)}
        lines.append(f"| {r['model']} | {statistics.mean(rm):.4f} ± {statistics.stdev(rm):.4f} | "
                     f"{statistics.mean(ma):.4f} | {rnd['RMSE']:.4f} | {rnd['MAE']:.4f} | {rnd['fit_s']:.2f} | "
                     f"{rnd.get('fit_cpu_s', float('nan')):.2f} | {r['peak_rss_mb']:.0f} |")
    info = machine()
    info["threads"] = 1
    info["load_average"] = {"before": load_before, "after": os.getloadavg()}
    md = (f"# Rating benchmark (ml-100k)\n\nMachine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
          f"{info['date']}, 1 torch thread per model; load average {load_before[0]:.1f} before, "
          f"{info['load_average']['after'][0]:.1f} after (a shared machine: wall seconds vary with the load, "
          "CPU seconds less so).\nDefault hyper-parameters; each model in its own process.\n\n"
          + "\n".join(lines) + "\n")
    print(md)
    write_results("rating", {"machine": info, "results": results}, md)


if __name__ == "__main__":
    main()
