"""Fits on a busy machine: `recotorch fit` quiet vs beside CPU-burning processes, before/after the thread policy.

Each run is a whole `python -m recotorch fit` process on ml-100k's u1.base (80,000 ratings):

- "busy": one busy-loop process per core (`while True: pass`) runs for the length of the fit;
- "before": the behaviour before recotorch.core.threads — torch's threads on every core for
  every step and OpenMP's default spinning wait (`--threads CORES`, `GOMP_SPINCOUNT=300000`);
- "after": the default policy (one thread for small training steps, passive OpenMP waiting).

Bar (issue 14): with the cores kept busy, `fit --model mf` (defaults) takes <= 3x its quiet wall time.
NCF runs 1 epoch to keep the whole benchmark under ~5 minutes on a quiet 2-core machine. The load
average before each run is recorded: on a shared machine "quiet" is only as quiet as the others let it be.

    python benchmarks/busy.py                 # mf and ncf, one run of each case
    python benchmarks/busy.py --models mf --repeats 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import machine, ml100k_dir, write_results
from _process import wait_child

MODEL_ARGS = {"mf": [], "ncf": ["--epochs", "1"]}  # mf: the defaults (the bar); ncf: 1 epoch (time)
TIMEOUT_S = 240.0  # a run still going after this is stopped and reported as "> 240 s"


def _train_csv(folder: Path) -> Path:
    path = folder / "u1_base.csv"
    rows = (ml100k_dir() / "u1.base").read_text().splitlines()
    path.write_text("user,item,rating,timestamp\n" + "\n".join(r.replace("\t", ",") for r in rows) + "\n")
    return path


def _variant_env(variant: str, cores: int) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                        "KMP_BLOCKTIME", "RECOTORCH_THREADS")}
    if variant == "before":
        return ["--threads", str(cores)], {**env, "GOMP_SPINCOUNT": "300000"}
    return [], env


def _burners(n: int) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    time.sleep(0.5)  # let them reach the busy loop
    return procs


def run_fit(train: Path, out: Path, model: str, variant: str, busy: bool, cores: int) -> dict[str, Any]:
    """One whole `recotorch fit` process: its wall and CPU seconds (its own, not the burners')."""
    pre, env = _variant_env(variant, cores)
    cmd = [sys.executable, "-m", "recotorch", *pre, "fit", str(train), "--model", model, "--out", str(out),
           *MODEL_ARGS[model]]
    load = os.getloadavg()[0]
    burners = _burners(cores) if busy else []
    try:
        with tempfile.TemporaryFile() as log:
            tic = time.perf_counter()
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            status, usage, timed_out = wait_child(proc, TIMEOUT_S)
            wall = time.perf_counter() - tic
            log.seek(0)
            output = log.read().decode(errors="replace")
    finally:
        for b in burners:
            b.kill()
            b.wait()
    if not timed_out and status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{output[-2000:]}")
    return {"model": model, "variant": variant, "busy": busy, "wall_s": round(wall, 2), "timed_out": timed_out,
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "load_before": round(load, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mf", "ncf"], choices=sorted(MODEL_ARGS))
    ap.add_argument("--variants", nargs="+", default=["before", "after"], choices=["before", "after"])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default="busy", help="results name under benchmarks/results/")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="recotorch-busy-") as tmp:
        train = _train_csv(Path(tmp))
        for _ in range(args.repeats):
            for model in args.models:
                for variant in args.variants:
                    for busy in (False, True):  # alternating, so slow drifts of the load hit both
                        run = run_fit(train, Path(tmp) / f"{model}-{variant}-{int(busy)}", model, variant, busy, cores)
                        runs.append(run)
                        print(f"  {model:4s} {variant:6s} {'busy' if busy else 'quiet':5s} {run['wall_s']:7.2f} s "
                              f"wall {run['cpu_s']:6.2f} s CPU (load {run['load_before']:.1f})", file=sys.stderr)
    rows = _summary(runs, args.models, args.variants)
    header = ("| model | variant | quiet wall s | busy wall s | busy / quiet | quiet CPU s | busy CPU s "
              "| load before (quiet, busy) |\n|---|---|---:|---:|---:|---:|---:|---|\n")
    body = "".join(f"| {r['model']} | {r['variant']} | {r['quiet_s']:.2f} | {_shown(r)} | {r['ratio']:.2f} | "
                   f"{r['quiet_cpu_s']:.2f} | {r['busy_cpu_s']:.2f} | {r['load_quiet']:.1f}, {r['load_busy']:.1f} |\n"
                   for r in rows)
    info = machine()
    mf_after = next((r for r in rows if r["model"] == "mf" and r["variant"] == "after"), None)
    bar = ("" if mf_after is None else
           f"\nBar: mf (defaults, after) busy / quiet = {mf_after['ratio']:.2f} (<= 3 wanted): "
           f"{'met' if mf_after['ratio'] <= 3 else 'NOT met'}.\n")
    md = (f"# Fits beside CPU-burning processes (benchmarks/busy.py)\n\n"
          f"{info['cpu']}, {cores} cores, torch {info['torch']}; {args.repeats} run(s) per case (medians), "
          f"{cores} busy-loop processes in the busy runs; wall seconds of the whole `recotorch fit` process "
          f"on ml-100k u1.base (80,000 ratings); mf with its defaults, ncf 1 epoch. 'before': "
          f"`--threads {cores}` and OpenMP's spinning wait (GOMP_SPINCOUNT=300000), as before the thread "
          f"policy; 'after': the default policy (recotorch.core.threads). The machine is shared: 'quiet' "
          f"runs had the load average shown. No GPU was lent to this task: CPU only.\n\n"
          + header + body + bar)
    print(md)
    write_results(args.out, {"machine": info, "cores": cores, "runs": runs, "summary": rows}, md)


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def _summary(runs: list[dict[str, Any]], models: list[str], variants: list[str]) -> list[dict[str, Any]]:
    rows = []
    for model in models:
        for variant in variants:
            mine = [r for r in runs if r["model"] == model and r["variant"] == variant]
            quiet = [r for r in mine if not r["busy"]]
            busy = [r for r in mine if r["busy"]]
            q, b = _median([r["wall_s"] for r in quiet]), _median([r["wall_s"] for r in busy])
            rows.append({"model": model, "variant": variant, "quiet_s": q, "busy_s": b, "ratio": b / q,
                         "quiet_cpu_s": _median([r["cpu_s"] for r in quiet]),
                         "busy_cpu_s": _median([r["cpu_s"] for r in busy]),
                         "busy_timed_out": any(r["timed_out"] for r in busy),
                         "load_quiet": _median([r["load_before"] for r in quiet]),
                         "load_busy": _median([r["load_before"] for r in busy])})
    return rows


def _shown(row: dict[str, Any]) -> str:
    return f"> {TIMEOUT_S:.0f}" if row["busy_timed_out"] else f"{row['busy_s']:.2f}"


if __name__ == "__main__":
    main()
