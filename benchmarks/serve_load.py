"""Load test of `recotorch serve` on loopback: throughput and latency of GET /users/{id}/recommendations?k=10.

Two catalogues, each served by a real server process (`python -m recotorch serve`):
1. the ml-100k MF model (1,682 items, exact scoring);
2. a synthetic MF model with 1,000,000 items (random 32-d vectors around 256 taste centres, a real
   string vocabulary "sku-0000001"...), retrieved through the FAISS IVF index built at save time;
   recall@10 of the *served* lists (seen items excluded) against exact scoring is measured too.

The load generator is asyncio with raw HTTP/1.1 keep-alive connections (one per concurrent
client): on a 2-core machine the client shares the CPU with the server, and httpx costs about a
millisecond of CPU per request, which would be charged to the server's latency. `--client httpx`
runs the same load through httpx.AsyncClient for comparison. Every request is checked (status 200,
JSON with k items); a wrong answer counts as an error.

    python benchmarks/serve_load.py                   # full run, writes benchmarks/results/serve_load.*
    python benchmarks/serve_load.py --quick --no-write
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ServerProcess, machine, ml100k_dir, synthetic_mf, write_results


# ---- the server ----------------------------------------------------------------------------
def server_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): the server's own cost per request."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_info(server: ServerProcess) -> dict[str, Any]:
    import httpx

    return httpx.get(server.url + "/info", timeout=60).json()


# ---- the load generator --------------------------------------------------------------------
async def _raw_client(port: int, paths: list[str], counter: list[int], k: int, out: list[float], errors: list[str],
                      ) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while counter[0] < len(paths):
            path = paths[counter[0]]
            counter[0] += 1
            tic = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            body = await reader.readexactly(length)
            out.append(time.perf_counter() - tic)
            _check(int(head[9:12]), body, k, path, errors)
    finally:
        writer.close()


async def _httpx_client(port: int, paths: list[str], counter: list[int], k: int, out: list[float],
                        errors: list[str]) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        while counter[0] < len(paths):
            path = paths[counter[0]]
            counter[0] += 1
            tic = time.perf_counter()
            response = await client.get(path)
            out.append(time.perf_counter() - tic)
            _check(response.status_code, response.content, k, path, errors)


def _check(status: int, body: bytes, k: int, path: str, errors: list[str]) -> None:
    if status != 200:
        errors.append(f"{path}: HTTP {status}")
    elif len(json.loads(body)["items"]) != k:
        errors.append(f"{path}: not {k} items")


def run_clients(client: Callable[[list[float], list[str]], Awaitable[None]], concurrency: int,
                expected: int) -> dict[str, Any]:
    """Run `concurrency` copies of `client(latencies, errors)` at once (they share the two lists) until
    all return; latency percentiles in ms, throughput, and the requests that failed or never came back."""
    latencies: list[float] = []
    errors: list[str] = []

    async def main() -> float:
        tic = time.perf_counter()
        results = await asyncio.gather(*(client(latencies, errors) for _ in range(concurrency)),
                                       return_exceptions=True)
        errors.extend(f"client failed: {r!r}" for r in results if isinstance(r, BaseException))
        return time.perf_counter() - tic

    wall = asyncio.run(main())
    ms = np.array(latencies) * 1e3
    return {"concurrency": concurrency, "requests": len(latencies), "errors": len(errors) + expected - len(ms),
            "first_errors": errors[:3], "seconds": round(wall, 2), "throughput_rps": round(len(ms) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "max_ms": round(float(ms.max()), 2)}


def run_load(port: int, paths: list[str], concurrency: int, k: int, client: str = "raw") -> dict[str, Any]:
    """Send every path once with `concurrency` clients in flight; latency percentiles in ms."""
    counter = [0]
    worker = _raw_client if client == "raw" else _httpx_client
    return run_clients(lambda latencies, errors: worker(port, paths, counter, k, latencies, errors), concurrency,
                       len(paths))


def user_paths(user_ids: list[Any], n: int, k: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"/users/{user_ids[j]}/recommendations?k={k}" for j in rng.integers(0, len(user_ids), n)]


def load_series(server: ServerProcess, user_ids: list[Any], args: argparse.Namespace, label: str,
                ) -> list[dict[str, Any]]:
    run_load(server.port, user_paths(user_ids, 300, 10, 99), 4, 10, args.client)  # warm-up
    rows = []
    for c in args.concurrency:
        cpu = server_cpu_seconds(server.pid)
        row = run_load(server.port, user_paths(user_ids, args.requests, 10, c), c, 10, args.client)
        row["server_cpu_ms_per_request"] = round((server_cpu_seconds(server.pid) - cpu) / args.requests * 1e3, 3)
        print(f"{label} c={c}: {row}", flush=True)
        rows.append(row)
    return rows


# ---- the two catalogues ---------------------------------------------------------------------
def ml100k_run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import recotorch as rt
    from recotorch.data.movielens import load_movielens

    model = rt.MatrixFactorization().fit(load_movielens(ml100k_dir()))
    model.save(work / "ml100k-mf")
    with ServerProcess(work / "ml100k-mf", "--store", "none") as server:
        rows = load_series(server, model.users_.ids.to_list(), args, "ml-100k")
    return {"catalogue": "ml-100k MF", "n_items": model.n_items, "n_users": model.n_users, "retrieval": "exact",
            "load": rows}


def million_run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from recotorch.serve.index import build_index

    tic = time.perf_counter()
    model = synthetic_mf(args.users, args.items, args.dim, clusters=args.clusters, seed=0)
    model.save(work / "synthetic-mf")
    made = time.perf_counter() - tic
    index = build_index(work / "synthetic-mf", model, target_recall=args.target_recall)
    print(f"synthetic model {made:.1f}s, index {index}", flush=True)
    with ServerProcess(work / "synthetic-mf", "--store", "none", "--ann-threshold", "100000") as server:
        info = server_info(server)
        recall = served_recall(server, model, args.recall_users)
        print(f"served recall@10 vs exact: {recall}", flush=True)
        rows = load_series(server, list(range(1, args.users + 1)), args, "1M items")
    return {"catalogue": f"synthetic MF, {args.items:,} items", "n_items": args.items, "n_users": args.users,
            "dim": args.dim, "clusters": args.clusters, "retrieval": info["retrieval"], "index": info["index"],
            "model_seconds": round(made, 1), "server_load_seconds": info["load_seconds"],
            "served_recall_at_10": recall, "load": rows}


def served_recall(server: ServerProcess, model: Any, n_users: int) -> dict[str, Any]:
    """Recall@10 of the lists the server returns (seen excluded) against exact top-10 by the model."""
    import httpx

    from recotorch.core import top_k

    users = np.random.default_rng(7).choice(model.n_users, n_users, replace=False)
    hits = []
    with httpx.Client(base_url=server.url, timeout=60) as client, torch.no_grad():
        for u in users.tolist():
            rows = torch.tensor([u])
            idx, _ = top_k(model.score(rows).float(), 10, exclude=model.seen_, rows=rows)
            exact = set(model.items_.lookup(idx[0].numpy()))
            served = {row["item"] for row in client.get(f"/users/{u + 1}/recommendations?k=10").json()["items"]}
            hits.append(len(served & exact) / 10)
    hits_np = np.array(hits)
    return {"users": n_users, "recall_at_10": round(float(hits_np.mean()), 4),
            "p1": round(float(np.percentile(hits_np, 1)), 2), "p5": round(float(np.percentile(hits_np, 5)), 2),
            "share_below_0.5": round(float((hits_np < 0.5).mean()), 4), "min": round(float(hits_np.min()), 2)}


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Serving load test", "", f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores "
             f"(shared with other work while measured, load average {result['load_average_after']} after the "
             f"run: numbers are noisy). Client: {result['client']} asyncio HTTP/1.1 keep-alive on loopback, one "
             "connection per concurrent client, on the same cores as the server. Server: `recotorch serve`, one "
             f"uvicorn process ({result['server_http']}, {result['server_loop']} loop), torch threads 1. Every "
             "response is checked (HTTP 200 and k items).", ""]
    for run in result["runs"]:
        lines += [f"## {run['catalogue']} ({run['retrieval']})", ""]
        if "served_recall_at_10" in run:
            ix, rc = run["index"], run["served_recall_at_10"]
            lines += [f"IVF-Flat (inner product), nlist {ix['nlist']}, nprobe {ix['nprobe']} (tuned to recall@10 "
                      f">= {ix['target_recall']}), built in {ix['build_seconds']} s and stored with the model; "
                      f"server start {run['server_load_seconds']} s. Served recall@10 vs exact scoring (seen items "
                      f"excluded) over {rc['users']} users: **{rc['recall_at_10']}** (per user: 1st percentile "
                      f"{rc['p1']}, 5th percentile {rc['p5']}, {rc['share_below_0.5']:.1%} of users below 0.5, worst "
                      f"{rc['min']}).", ""]
        lines += ["| concurrency | requests | errors | throughput (req/s) | p50 ms | p90 ms | p99 ms | max ms | "
                  "server CPU ms/req |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in run["load"]:
            lines.append(f"| {r['concurrency']} | {r['requests']:,} | {r['errors']} | {r['throughput_rps']} | "
                         f"{r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {r['max_ms']} | "
                         f"{r['server_cpu_ms_per_request']} |")
        lines.append("")
    return "\n".join(lines)


def _installed(module: str, otherwise: str) -> str:
    """What uvicorn's "auto" picks: the fast implementation when it is installed."""
    import importlib.util

    return module if importlib.util.find_spec(module) else otherwise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--clusters", type=int, default=256, help="0 for i.i.d. Gaussian vectors (the worst case)")
    parser.add_argument("--target-recall", type=float, default=0.97)
    parser.add_argument("--recall-users", type=int, default=500)
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument("--only", choices=["ml100k", "million"], default=None)
    parser.add_argument("--quick", action="store_true", help="1,000 requests and 100,000 items")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.items, args.recall_users = 1000, 100_000, 100
    torch.set_num_threads(1)
    runs = []
    with tempfile.TemporaryDirectory(prefix="serve_load.") as tmp:
        if args.only in (None, "ml100k"):
            runs.append(ml100k_run(args, Path(tmp)))
        if args.only in (None, "million"):
            runs.append(million_run(args, Path(tmp)))
    result = {"machine": machine(), "client": args.client, "requests_per_level": args.requests,
              "server_http": _installed("httptools", "h11"), "server_loop": _installed("uvloop", "asyncio"),
              "load_average_after": [round(x, 2) for x in os.getloadavg()], "runs": runs}
    if not args.no_write:
        write_results("serve_load", result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
