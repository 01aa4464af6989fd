"""Latency of POST /recommendations with an ordered `history` on a SASRec model (the real server).

A SASRec model with the default architecture (its Config: width, blocks, heads, max_len) is fitted
on ml-100k and saved; `recotorch serve` (one uvicorn process, torch threads 1) answers requests
whose histories are real users' latest items (lengths drawn from 1 to 2 x max_len, so some are
cut to the model's context), k=10, history items excluded. Serving cost does not depend on how
long the model trained, so `--epochs` (default 2) only shortens the set-up. Every response is checked
(HTTP 200, `scored_by` next_items, k items, none from the history). The client is raw asyncio HTTP/1.1
keep-alive on loopback (one connection per concurrent client), on the same cores as the server.
The bar (issue 13): p99 <= 20 ms at concurrency 1.

    python benchmarks/serve_history.py [--requests 2000] [--concurrency 1 4] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ServerProcess, machine, ml100k_dir, write_results
from serve_load import run_clients, server_cpu_seconds

BAR_P99_MS = 20.0


def histories(model: Any, n: int, seed: int) -> list[list[int]]:
    """`n` histories (raw item ids, oldest first): the latest 1 .. 2 x max_len items of random known users."""
    rng = np.random.default_rng(seed)
    seqs = model.sequences_
    out = []
    for u, length in zip(rng.integers(0, seqs.n_users, n), rng.integers(1, 2 * model.context_length + 1, n),
                         strict=True):
        row = seqs.row(int(u))[-int(length):]
        out.append(model.items_.ids.gather(row.numpy()).to_list())
    return out


async def _client(port: int, bodies: list[bytes], sent: list[list[int]], counter: list[int], k: int,
                  out: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while counter[0] < len(bodies):
            j = counter[0]
            counter[0] += 1
            body = bodies[j]
            tic = time.perf_counter()
            writer.write(b"POST /recommendations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            answer = await reader.readexactly(length)
            out.append(time.perf_counter() - tic)
            _check(int(head[9:12]), answer, k, sent[j], errors)
    finally:
        writer.close()


def _check(status: int, body: bytes, k: int, history: list[int], errors: list[str]) -> None:
    if status != 200:
        errors.append(f"HTTP {status}: {body[:200]!r}")
        return
    answer = json.loads(body)
    items = [row["item"] for row in answer["items"]]
    if answer.get("scored_by") != "next_items" or len(items) != k or set(items) & set(history):
        errors.append(f"wrong answer for a history of {len(history)}: {answer.get('scored_by')}, {len(items)} items")


def run_load(port: int, sent: list[list[int]], concurrency: int, k: int) -> dict[str, Any]:
    bodies = [json.dumps({"history": h, "k": k}).encode() for h in sent]
    counter = [0]
    row = run_clients(lambda latencies, errors: _client(port, bodies, sent, counter, k, latencies, errors),
                      concurrency, len(sent))
    return {**row, "mean_history": round(float(np.mean([len(h) for h in sent])), 1)}


def markdown(result: dict[str, Any]) -> str:
    m = result["model"]
    lines = ["# POST /recommendations with a history (SASRec)", "",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, shared with other work "
             f"(load average {result['load_before']} before, {result['load_after']} after: the numbers are noisy). "
             f"Server: `recotorch serve`, one uvicorn process, torch threads 1. Model: SASRec on ml-100k "
             f"({m['n_items']:,} items; dim {m['dim']}, {m['blocks']} blocks, {m['heads']} heads, max_len "
             f"{m['max_len']}; trained {m['epochs']} epochs: serving cost does not depend on it). Histories: real "
             "users' latest 1 .. 2 x max_len items, k=10, history items excluded, every answer checked. "
             f"Bar: p99 <= {BAR_P99_MS:g} ms at concurrency 1.", "",
             "| concurrency | requests | errors | mean history | throughput (req/s) | p50 ms | p90 ms | p99 ms | "
             "max ms | server CPU ms/req |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["load"]:
        lines.append(f"| {r['concurrency']} | {r['requests']:,} | {r['errors']} | {r['mean_history']} | "
                     f"{r['throughput_rps']} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {r['max_ms']} | "
                     f"{r['server_cpu_ms_per_request']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per concurrency level (>= 500)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--epochs", type=int, default=2, help="SASRec training epochs (set-up time only)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import recotorch as rt
    from recotorch.data.movielens import load_movielens

    load_before = [round(x, 2) for x in os.getloadavg()]
    model = rt.SASRec(epochs=args.epochs).fit(load_movielens(ml100k_dir()))
    rows = []
    with tempfile.TemporaryDirectory(prefix="serve_history.") as tmp:
        model.save(Path(tmp) / "sasrec")
        with ServerProcess(Path(tmp) / "sasrec", "--store", "none") as server:
            run_load(server.port, histories(model, 200, 99), 2, 10)  # warm-up
            for c in args.concurrency:
                cpu = server_cpu_seconds(server.pid)
                row = run_load(server.port, histories(model, args.requests, c), c, 10)
                row["server_cpu_ms_per_request"] = round((server_cpu_seconds(server.pid) - cpu) / args.requests * 1e3,
                                                         3)
                print(f"c={c}: {row}", flush=True)
                rows.append(row)
    result = {"machine": machine(), "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
              "model": {"n_items": model.n_items, "dim": model.dim, "blocks": model.blocks, "heads": model.heads,
                        "max_len": model.max_len, "epochs": args.epochs}, "bar_p99_ms": BAR_P99_MS, "load": rows}
    if not args.no_write:
        write_results("serve_history", result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
