"""The command round trip: `recotorch fit` whole-process time and its parts.

Whole processes (wall and their own CPU seconds, medians of --repeats):
`python -c pass` (the interpreter), `import recotorch`, `recotorch --version`, `recotorch --help`,
`recotorch fit --model mf` (defaults) and `--fast` on ml-100k's u1.base (80,000 ratings, CSV).

Parts, each timed inside one fresh process doing what `fit` does (after the CLI entry's thread
set-up), in order: import (the CLI and
the fit verb's modules), read (Polars reading the raw columns: the floor), read + validate
(`read_interactions`: types, checks, duplicates, vocabularies), fit, save (the model
directory). Also whether `torch._dynamo` was imported (0.8 s when it is).

    python benchmarks/startup.py               # 3 repeats, results in benchmarks/results/startup.{md,json}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import machine, ml100k_dir, write_results
from _process import timed_run

PARTS = """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
from recotorch.core import threads
threads.prepare_process()  # as the CLI entry does, before torch is imported
laps = {}
def lap(name):
    global t0, c0
    t, c = time.perf_counter(), time.process_time()
    laps[name] = [t - t0, c - c0]
    t0, c0 = t, c
import recotorch.cli, recotorch.cli.rating
lap("import")
import polars as pl
pl.read_csv(sys.argv[1], infer_schema_length=1000)
lap("read (raw Polars)")
from recotorch.data.readers import read_interactions
data = read_interactions(sys.argv[1])
lap("read + validate")
from recotorch.models import make_model
from recotorch.artifacts import save
model = make_model("mf", **json.loads(sys.argv[3]))
model.fit(data)
lap("fit")
save(model, sys.argv[2])
lap("save")
laps["dynamo imported"] = "torch._dynamo" in sys.modules
print(json.dumps(laps))
"""


def _train_csv(folder: Path) -> Path:
    path = folder / "u1_base.csv"
    rows = (ml100k_dir() / "u1.base").read_text().splitlines()
    path.write_text("user,item,rating,timestamp\n" + "\n".join(r.replace("\t", ",") for r in rows) + "\n")
    return path


ENV = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "RECOTORCH_THREADS", "OMP_WAIT_POLICY")}


def _whole(cases: dict[str, list[str]], repeats: int, tmp: Path, before: Path | None) -> list[dict[str, Any]]:
    """Medians per case; with `before` (an older commit's src/), each case also runs on that code, alternating."""
    trees = {"now": ENV, **({"before": {**ENV, "PYTHONPATH": str(before)}} if before else {})}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {(n, t): [] for n in cases for t in trees}
    for r in range(repeats):
        for name, cmd in cases.items():  # alternating cases, so a change of load hits all of them
            for tree, env in trees.items():
                argv = [c.replace("{out}", str(tmp / f"model-{tree}-{r}-{len(runs[name, tree])}")) for c in cmd]
                run = timed_run(argv, env)
                if run["status"] != 0:
                    raise SystemExit(f"{' '.join(argv)} failed:\n{str(run['output'])[-2000:]}")
                runs[name, tree].append(run)
    return [{"case": name, "code": tree, "wall_s": round(median(r["wall_s"] for r in rs), 3),
             "cpu_s": round(median(r["cpu_s"] for r in rs), 3)} for (name, tree), rs in runs.items()]


def _parts(train: Path, repeats: int, tmp: Path, params: dict[str, Any]) -> dict[str, Any]:
    laps = []
    for r in range(repeats):
        out = tmp / f"parts-{json.dumps(params, sort_keys=True)}-{r}".replace(" ", "").replace('"', "")
        run = timed_run([sys.executable, "-c", PARTS, str(train), str(out), json.dumps(params)], ENV)
        if run["status"] != 0:
            raise SystemExit(f"parts run failed:\n{str(run['output'])[-2000:]}")
        laps.append(json.loads(str(run["output"]).strip().splitlines()[-1]))
    names = [k for k, v in laps[0].items() if isinstance(v, list)]
    return {"parts": {k: {"wall_s": round(median(x[k][0] for x in laps), 3),
                          "cpu_s": round(median(x[k][1] for x in laps), 3)} for k in names},
            "dynamo_imported": any(x["dynamo imported"] for x in laps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="startup", help="results name under benchmarks/results/")
    ap.add_argument("--before-src", type=Path, help="an older commit's src/ (git archive COMMIT src | tar -x): "
                                                   "whole processes on that code too, for a before/after table")
    args = ap.parse_args()
    py = sys.executable
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="recotorch-startup-") as tmp_name:
        tmp = Path(tmp_name)
        train = _train_csv(tmp)
        cases = {
            "python -c pass": [py, "-c", "pass"],
            "import recotorch": [py, "-c", "import recotorch"],
            "recotorch --version": [py, "-m", "recotorch", "--version"],
            "recotorch --help": [py, "-m", "recotorch", "--help"],
            "recotorch fit --model mf": [py, "-m", "recotorch", "fit", str(train), "--out", "{out}"],
            "recotorch fit --model mf --fast": [py, "-m", "recotorch", "fit", str(train), "--fast",
                                                "--out", "{out}"],
        }
        whole = _whole(cases, args.repeats, tmp, args.before_src)
        from recotorch.models.mf import FAST_SETTINGS

        parts = {"mf (defaults)": _parts(train, args.repeats, tmp, {}),
                 "mf --fast": _parts(train, args.repeats, tmp, FAST_SETTINGS)}
    load_after = os.getloadavg()
    info = machine()
    md = [f"# Start-up and the `fit` round trip (benchmarks/startup.py)\n\n"
          f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}, Python {info['python']}; medians of "
          f"{args.repeats} runs; ml-100k u1.base as CSV (80,000 ratings); the default thread policy "
          f"(no OMP_NUM_THREADS). Load average (1, 5, 15 min) before {_load(load_before)}, after "
          f"{_load(load_after)}: the machine is shared, so wall seconds are inflated; CPU seconds are the "
          f"steadier figure. No GPU was lent to this task: CPU only.\n",
          "## Whole processes\n"]
    if args.before_src:
        md.append(f"'before': the same commands on the code in {args.before_src} (`--before-src`), run "
                  "alternately with 'now'.\n")
    md += ["| command | code | wall s | CPU s |", "|---|---|---:|---:|"]
    md += [f"| `{w['case']}` | {w['code']} | {w['wall_s']:.2f} | {w['cpu_s']:.2f} |" for w in whole]
    for name, p in parts.items():
        md += [f"\n## Parts of a fit, {name}: one process, in order\n", "| part | wall s | CPU s |", "|---|---:|---:|"]
        md += [f"| {k} | {v['wall_s']:.3f} | {v['cpu_s']:.3f} |" for k, v in p["parts"].items()]
        md.append(f"\ntorch._dynamo imported: {'yes' if p['dynamo_imported'] else 'no'}")
    text = "\n".join(md) + "\n"
    print(text)
    write_results(args.out, {"machine": info, "load_before": load_before, "load_after": load_after,
                             "whole": whole, "parts": parts}, text)


def _load(avg: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.1f}" for x in avg)


if __name__ == "__main__":
    main()
