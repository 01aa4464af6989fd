"""Scale benchmark: ingestion, MF training throughput and quality, all-users top-k, 1 vs 2 processes.

Every measurement runs in its own process (so peak RSS is its own); synthetic logs are made
once and cached in --data-dir. Prints tables and writes benchmarks/results/scale.{json,md}.

    python benchmarks/scale.py --quick --out scale_quick   # small sizes, a few minutes
    python benchmarks/scale.py                         # 1M/5M/25M-row files, 20M-row training, 100k x 50k top-k
    python benchmarks/scale.py --parts ingest --ingest-rows 25e6 --threads 2

Throughput is samples per wall second of training (history.seconds), and per CPU second;
numbers from a shared, busy machine are noisy, so the machine's load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import RESULTS, machine, ml100k_dir, write_results

HERE = Path(__file__).resolve()
# (name, MatrixFactorization params, mode on the large log: "full" fit or a throughput "probe")
CONFIGS: list[tuple[str, dict[str, Any], str]] = [
    ("fast (row-wise Adagrad, user blocks, compiled step)", {"fast": True}, "full"),
    ("fast, random order", {"fast": True, "shuffle": "random"}, "full"),
    ("fast, tensor-op step (no Numba)", {"fast": True, "compiled": False}, "full"),
    ("fast, tensor-op step, random order", {"fast": True, "compiled": False, "shuffle": "random"}, "full"),
    ("sparse_adam bs 8192", {"optimizer": "sparse_adam", "batch_size": 8192, "lr": 0.03, "weight_decay": 0.1}, "probe"),
    ("plain loop (dense AdamW) bs 8192", {"batch_size": 8192, "lr": 1e-2, "weight_decay": 0.1}, "probe"),
    ("default MF (AdamW bs 1024)", {}, "probe"),
    ("course (AdamW bs 64, 5e-3, wd 0.1)", {"batch_size": 64, "lr": 5e-3, "weight_decay": 0.1}, "probe"),
]


def _shape(rows: int) -> tuple[int, int]:
    """Users and items for a log of `rows` rows, in MovieLens-20M's proportions (138k x 27k for 20M)."""
    return max(100, rows // 143), max(2000, rows // 740)


def synthetic_file(data_dir: Path, rows: int, fmt: str) -> Path:
    path = data_dir / f"synth_{rows}.{fmt}"
    if not path.exists():
        from recotorch.data.synthetic import generate

        tic = time.perf_counter()
        generate(*_shape(rows), rows, seed=0).write(path)
        print(f"  made {path.name} in {time.perf_counter() - tic:.1f} s", file=sys.stderr)
    return path


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    """This process's peak RSS. VmHWM, not getrusage's ru_maxrss (`_common.peak_rss_mb`): a child
    process keeps its parent's ru_maxrss across fork+exec, so a big parent inflates every child."""
    return _status_mb("VmHWM")


# ---- measurements (each in its own process) -------------------------------------------------
def m_ingest(path: str, raw: bool = False) -> dict:
    import polars as pl

    from recotorch.data.readers import read_interactions

    tic, cpu = time.perf_counter(), time.process_time()
    if raw:  # the parse alone, typed, as a floor for the reader
        frame = pl.read_csv(path, schema_overrides={"user": pl.Int64, "item": pl.Int64, "rating": pl.Float64,
                                                    "timestamp": pl.Int64})
        n = frame.height
    else:
        data = read_interactions(path)
        n = len(data)
    return {"seconds": time.perf_counter() - tic, "cpu_s": time.process_time() - cpu, "rows": n,
            "peak_rss_mb": peak_mb(), "file_mb": Path(path).stat().st_size / 2**20}


def _split(path: str):
    import polars as pl

    from recotorch.data import splits
    from recotorch.data.interactions import Interactions

    data = Interactions.from_frame(pl.read_parquet(path))
    return splits.random(data, test_frac=0.1, seed=0)


def m_train(path: str, name: str, params: dict, mode: str, dim: int, probe_rows: int) -> dict:
    """A full fit (samples/s and test RMSE), or a throughput probe of the Trainer on full-size tables."""
    import numpy as np
    import torch

    import recotorch as rt

    if path == "ml-100k":
        from recotorch.data import splits
        from recotorch.data.movielens import load_movielens

        split = splits.random(load_movielens(ml100k_dir()), test_frac=0.2, seed=0)
    else:
        split = _split(path)
    params = dict(params)
    if not params.pop("compiled", True):  # this process only: the fused step's tensor-op path
        from recotorch.train import mf_kernel

        mf_kernel.supports = lambda *tensors: False
    make = rt.MatrixFactorization.fast if params.pop("fast", False) else rt.MatrixFactorization
    model = make(**{"dim": dim, **params})
    train = split.train
    if mode == "probe":  # one epoch over the first rows (at most 300 batches), tables for every user and item
        from recotorch.models.mf import DotBias
        from recotorch.train.losses import mse_loss
        from recotorch.train.trainer import Trainer

        train = train.compact()
        module = DotBias(train.n_users, train.n_items, model.dim, (0.0, 5.5), sparse=model.sparse_gradients)
        rows = torch.arange(min(probe_rows, 300 * model.batch_size, len(train)))
        data = {"user_idx": train.user_idx[rows], "item_idx": train.item_idx[rows], "rating": train.rating[rows]}
        cfg = model.train_config()
        cfg.epochs = 1
        cpu = time.process_time()
        history = Trainer(cfg).fit(module, lambda b: mse_loss(module(b["user_idx"], b["item_idx"]), b["rating"]), data)
        samples, rmse, cpu = rows.numel(), None, time.process_time() - cpu
    else:
        tic = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - tic
        history, samples, cpu = model.history_, len(train) * len(model.history_.epochs), None
        frame = split.test.to_frame()
        pred = model.predict(frame["user"], frame["item"]).values
        rmse = float(np.sqrt(np.mean((pred - frame["rating"].to_numpy()) ** 2)))
    seconds = history.seconds
    return {"config": name, "mode": mode, "samples": samples, "train_s": seconds, "samples_per_s": samples / seconds,
            "samples_per_cpu_s": samples / cpu if cpu else None, "rmse": rmse,
            "epochs_s_full": seconds / samples * len(train) * model.epochs, "batch_size": model.batch_size,
            "fit_s": fit_s if mode == "full" else None,
            "peak_rss_mb": peak_mb()}


def m_topk(n_users: int, n_items: int, chunk: int) -> dict:
    import recotorch as rt
    from recotorch.data.synthetic import generate

    data = generate(n_users, n_items, 20 * n_users, seed=0).interactions()
    model = rt.MatrixFactorization.fast(dim=64, epochs=1).fit(data)
    users = model.users_.ids.to_list()
    before = _status_mb("VmRSS")
    tic, cpu = time.perf_counter(), time.process_time()
    recs = model.recommend(users, k=20, batch_size=chunk or None)
    return {"users": len(users), "items": model.n_items, "chunk": chunk or "auto",
            "seconds": time.perf_counter() - tic, "cpu_s": time.process_time() - cpu,
            "extra_rss_mb": peak_mb() - before, "filled": int((recs.item_idx >= 0).sum())}


def m_ddp(path: str, fused: bool) -> dict:
    """MF with row-wise Adagrad; under torchrun each process takes half of every batch."""
    import recotorch as rt
    from recotorch.train import distributed

    split = _split(path)
    model = rt.MatrixFactorization.fast(dim=64, epochs=1)
    if not fused:
        model._fused_step = lambda: None  # the generic autograd path, as under torchrun
    cpu = time.process_time()
    model.fit(split.train)
    out = {"world": distributed.world_size(), "fused": fused and distributed.world_size() == 1,
           "train_s": model.history_.seconds, "samples_per_s": len(split.train) / model.history_.seconds,
           "cpu_s": time.process_time() - cpu, "threads": __import__("torch").get_num_threads()}
    return out if distributed.is_main_process() else {}


# ---- orchestration --------------------------------------------------------------------------
def one(kind: str, args: dict, threads: int | None, torchrun: int = 0) -> dict:
    cmd = [sys.executable, str(HERE), "--one", kind, json.dumps(args)]
    cmd += ["--threads", str(threads)] if threads else []
    if torchrun:
        cmd[1:1] = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{") and ln.strip() != "{}"]
    return json.loads(lines[-1])


def table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    out = ["| " + " | ".join(h for h, _, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for _, key, fmt in cols:
            v = r.get(key)
            cells.append("n/a" if v is None else (fmt.format(v) if fmt else str(v)))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


# part -> (title, columns); titles are formatted with the part's "meta"
RENDER: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "ingest": ("Ingestion into Interactions (read_interactions: typed parse, validation, duplicate check, "
               "id mapping)", [("rows", "rows", "{:,}"), ("format", "format", ""), ("what", "what", ""),
                               ("file MB", "file_mb", "{:.0f}"), ("seconds", "seconds", "{:.1f}"),
                               ("CPU s", "cpu_s", "{:.1f}"), ("peak RSS MB", "peak_rss_mb", "{:.0f}")]),
    "train": ("MF training: samples/s = rows x epochs / seconds in the epochs; 'whole fit s' adds the set-up "
              "(bias baseline for unknown ids, sorting rows by user, compiling the Numba step or loading it from "
              "cache); probe = 1 epoch over the first min({probe_rows:,}, 300 batches) rows with full-size tables, "
              "and 's for all epochs' extrapolates it",
              [("data", "data", ""), ("config", "config", ""), ("dim", "dim", ""), ("batch", "batch_size", ""),
               ("mode", "mode", ""), ("samples/s", "samples_per_s", "{:,.0f}"),
               ("samples/CPU-s", "samples_per_cpu_s", "{:,.0f}"), ("RMSE", "rmse", "{:.4f}"),
               ("train s", "train_s", "{:.1f}"), ("s for all epochs", "epochs_s_full", "{:,.0f}"),
               ("whole fit s", "fit_s", "{:.1f}"),
               ("peak RSS MB", "peak_rss_mb", "{:.0f}")]),
    "topk": ("All-users top-20 with `recommend`, {users:,} users x {items:,} items, dim 64, seen items excluded "
             "(chunk = users scored at once; auto = about 16M scores)",
             [("chunk", "chunk", ""), ("seconds", "seconds", "{:.1f}"),
              ("CPU s", "cpu_s", "{:.1f}"), ("extra peak RSS MB", "extra_rss_mb", "{:.0f}")]),
    "ddp": ("1 process vs 2 under torchrun (gloo): MF.fast dim 64, {rows:,}-row log, 1 epoch",
            [("processes", "world", ""), ("fused step", "fused", ""), ("threads each", "threads", ""),
             ("train s", "train_s", "{:.1f}"), ("samples/s", "samples_per_s", "{:,.0f}")]),
}


def measure(part: str, a: argparse.Namespace) -> tuple[list[dict], dict]:
    """Rows of one part and what they were measured with."""
    q, rows_out = a.quick, []
    meta: dict[str, Any] = {}
    if part == "ingest":
        for rows in [int(float(x)) for x in (a.ingest_rows or ("2e5,1e6" if q else "1e6,5e6,25e6")).split(",")]:
            for fmt in ("csv", "parquet"):
                path = str(synthetic_file(a.data_dir, rows, fmt))
                rows_out.append({"rows": rows, "format": fmt, "what": "read_interactions",
                                 **one("ingest", {"path": path}, a.threads)})
                if fmt == "csv":
                    rows_out.append({"rows": rows, "format": fmt, "what": "polars parse only",
                                     **one("ingest", {"path": path, "raw": True}, a.threads)})
    elif part == "train":
        train_rows = int(a.train_rows or (5e5 if q else 20e6))
        meta["probe_rows"] = int(a.probe_rows or (2e5 if q else 2e6))
        big = str(synthetic_file(a.data_dir, train_rows, "parquet"))
        for data, label in (("ml-100k", "ml-100k 80/20"), (big, f"synthetic {train_rows:,} rows 90/10")):
            for name, params, mode in CONFIGS:
                dim = 50 if data == "ml-100k" and name.startswith(("course", "default")) else a.dim
                r = one("train", {"path": data, "name": name, "params": params, "dim": dim,
                                  "mode": "full" if data == "ml-100k" or q else mode,
                                  "probe_rows": meta["probe_rows"]}, a.threads)
                rows_out.append({"data": label, "dim": dim, **r})
    elif part == "topk":
        meta["users"], meta["items"] = map(int, (a.topk or ("5000,5000" if q else "100000,50000")).split(","))
        rows_out = [one("topk", {"n_users": meta["users"], "n_items": meta["items"], "chunk": int(c)}, a.threads)
                    for c in a.chunks.split(",")]
    elif part == "ddp":
        meta["rows"] = int(a.ddp_rows or (2e5 if q else 2e6))
        path = str(synthetic_file(a.data_dir, meta["rows"], "parquet"))
        rows_out = [one("ddp", {"path": path, "fused": True}, a.threads),
                    one("ddp", {"path": path, "fused": False}, a.threads),
                    one("ddp", {"path": path, "fused": False}, None, torchrun=2)]
    return rows_out, meta


def render(results: dict) -> str:
    info = results.get("machine", {})
    text = [f"# Scale benchmark\n\nMachine: {info.get('cpu')}, {info.get('cores')} cores, torch {info.get('torch')}. "
            "Each part below says when it ran, with how many torch threads, and the load average (1 min) "
            "before/after: on a shared machine, other jobs' load slows every number here.\n"]
    for part, (title, cols) in RENDER.items():
        if part not in results:
            continue
        r = results[part]
        m = r["meta"]
        text.append(f"## {title.format(**m)}\n\n{m['date']}, {m['threads']} thread(s), load "
                    f"{m['load_before']:.1f} / {m['load_after']:.1f}\n\n{table(r['rows'], cols)}\n")
    return "\n".join(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (minutes)")
    p.add_argument("--parts", default="ingest,train,topk,ddp", help="parts not run keep their previous results")
    p.add_argument("--fresh", action="store_true", help="drop previous results of parts not run")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "recotorch-scale")
    p.add_argument("--threads", type=int, help="torch threads per measurement (default: torch's)")
    p.add_argument("--ingest-rows", help="comma-separated row counts (default 1e6,5e6,25e6)")
    p.add_argument("--train-rows", type=float, help="rows of the training log (default 20e6)")
    p.add_argument("--probe-rows", type=float, help="rows per throughput probe (default 2e6)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--topk", help="users,items of the top-k run (default 100000,50000)")
    p.add_argument("--chunks", default="0,128,1024", help="users per recommend chunk (0 = recommend's default)")
    p.add_argument("--ddp-rows", type=float, help="rows for the 1 vs 2 process run (default 2e6)")
    p.add_argument("--out", default="scale", help="results name: benchmarks/results/OUT.{json,md} (e.g. scale_quick)")
    p.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    if a.one:
        print(json.dumps(globals()[f"m_{a.one[0]}"](**json.loads(a.one[1]))), flush=True)
        return
    a.data_dir.mkdir(parents=True, exist_ok=True)
    previous = RESULTS / f"{a.out}.json"
    results = {} if a.fresh or not previous.exists() else json.loads(previous.read_text())
    results["machine"] = machine()
    for part in a.parts.split(","):
        before, date = os.getloadavg()[0], machine()["date"]
        rows, meta = measure(part, a)
        threads = a.threads or results["machine"]["threads"]
        results[part] = {"rows": rows, "meta": {**meta, "date": date, "threads": threads, "quick": a.quick,
                                                "load_before": before, "load_after": os.getloadavg()[0]}}
    text = render(results)
    print(text)
    write_results(a.out, results, text)


if __name__ == "__main__":
    main()
