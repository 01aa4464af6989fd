"""Next-item benchmark on ml-100k, leave-one-out: recotorch's sequence models beside the baselines.

Protocol (`recotorch.models.sequential.protocol`): each user's last item (by timestamp, ties by file
order) is the test target, the history is everything before it; full ranking over all items with
history items excluded; NDCG@10, HR@10 and MRR@10 over all 943 users (a target whose item never
occurs in training counts as a miss). `--valid` scores the second-to-last item instead, with
the model trained without the last two items: the target every setting was chosen on.
Fit seconds are wall time with `--threads` threads (default 1; fixed with `recotorch.set_threads`, which the
Trainer's own thread policy obeys) and the fit's CPU seconds; the load average is recorded beside them.
Prints a table and writes benchmarks/results/sequential.{json,md} (the test run only).

    OMP_NUM_THREADS=1 python benchmarks/sequential.py [--valid] [--models sasrec,knn_last,...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

import polars as pl
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import machine, ml100k_dir, peak_rss_mb, write_results

MODELS = {
    "pop": ("most popular", "pop", {}),
    "transitions": ("last-item transitions", "transitions", {}),
    "knn_last": ("item-kNN, last 3 items", "knn_last", {}),
    "gru4rec": ("GRU4Rec (GRU, full softmax)", "gru4rec", {}),
    "sasrec": ("SASRec (full softmax)", "sasrec", {}),
}


def main() -> None:
    from recotorch.data import splits
    from recotorch.data.interactions import Interactions
    from recotorch.models import make_model
    from recotorch.models.sequential import SequenceModel
    from recotorch.models.sequential.protocol import next_item_metrics

    parser = argparse.ArgumentParser()
    parser.add_argument("--valid", action="store_true", help="score the validation target (second-to-last item)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads for fitting and scoring")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a model setting for every model listed (as the CLI's --set), e.g. bf16_logits=true")
    args = parser.parse_args()
    from recotorch import set_threads
    from recotorch.core.allocator import keep_freed_memory

    keep_freed_memory()  # as the CLI entry does: the logits buffer is not faulted in again at every step
    settings = dict(_setting(text) for text in args.set)

    set_threads(args.threads)  # torch.set_num_threads alone would not hold: the Trainer's thread policy decides
    frame = pl.read_csv(ml100k_dir() / "u.data", separator="\t", has_header=False,
                        new_columns=["user", "item", "rating", "timestamp"])
    data = Interactions.from_frame(frame, source="ml-100k u.data")
    if args.valid:
        split, valid = splits.user_last(data, validation=True)
        train, target = split.train, valid
    else:
        split = splits.user_last(data)
        train, target = split.train, replace(split.test, user_idx=torch.cat([split.test.user_idx, split.cold.user_idx]),
                                             item_idx=torch.cat([split.test.item_idx, split.cold.item_idx]),
                                             rating=None, timestamp=torch.cat([split.test.timestamp,
                                                                               split.cold.timestamp]))
    rows = []
    for key in args.models.split(","):
        label, name, params = MODELS[key]
        label += "".join(f", {k}={v}" for k, v in settings.items())
        load_before = os.getloadavg()[0]
        tic, cpu = time.perf_counter(), time.process_time()
        model = make_model(name, **{**params, **settings}).fit(train)
        seconds, cpu = time.perf_counter() - tic, time.process_time() - cpu
        if isinstance(model, SequenceModel):
            metrics = next_item_metrics(model, target)
        else:  # the popularity baseline: the same protocol over its cold scores
            metrics = _popularity_metrics(model, target)
        row = {"model": label, "name": name, "NDCG@10": round(metrics["NDCG@10"], 4),
               "HR@10": round(metrics["HR@10"], 4), "MRR@10": round(metrics["MRR@10"], 4),
               "users": metrics["users"], "fit_s": round(seconds, 1), "fit_cpu_s": round(cpu, 1),
               "load_1min": round((load_before + os.getloadavg()[0]) / 2, 1)}
        rows.append(row)
        print(" | ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        _report(rows, args.valid)  # after each model, so a long run leaves what it has
    print(_report(rows, args.valid))


def _setting(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE read as a Python literal where it is one (true/false as booleans)."""
    import ast

    key, _, value = text.partition("=")
    value = {"true": "True", "false": "False"}.get(value.lower(), value)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _report(rows: list[dict], valid: bool) -> str:
    """The Markdown table; the test run also writes benchmarks/results/sequential.{json,md}."""
    what = "validation (second-to-last item)" if valid else "test (last item)"
    md = [f"### Next item on ml-100k, leave-one-out, {what}", "",
          "| model | NDCG@10 | HR@10 | MRR@10 | users | fit s | fit CPU s | load (1 min) |",
          "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['model']} | {r['NDCG@10']:.4f} | {r['HR@10']:.4f} | {r['MRR@10']:.4f} | {r['users']} | "
           f"{r['fit_s']} | {r['fit_cpu_s']} | {r['load_1min']} |" for r in rows]
    info = machine()
    md += ["", f"- machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
               f"{torch.get_num_threads()} thread(s); "
               f"the load average (shared machine) is recorded per model", f"- peak RSS {peak_rss_mb():.0f} MB",
           "- protocol: full ranking over all items, history items excluded; all users counted "
           "(a target item unseen in training is a miss)"]
    if not valid:
        write_results("sequential", {"machine": info, "target": what, "rows": rows}, "\n".join(md) + "\n")
    return "\n".join(md)


def _popularity_metrics(model, target) -> dict[str, float]:
    from recotorch.models.sequential import Transitions
    from recotorch.models.sequential.protocol import next_item_metrics

    class _Popular(Transitions):  # popularity through the same protocol code: every link empty
        def _represent(self, history):
            return self.popularity_.repeat(history.shape[0], 1)

    proxy = _Popular()
    proxy.__dict__.update({k: v for k, v in model.__dict__.items() if k in ("users_", "items_", "seen_")})
    from recotorch.data.sequences import Sequences

    seen = model.seen_
    proxy.sequences_ = Sequences(seen.indptr, seen.indices, model.n_items)  # order is not used
    counts = torch.bincount(seen.indices, minlength=model.n_items).float()
    proxy.popularity_ = counts / counts.max()
    return next_item_metrics(proxy, target)


if __name__ == "__main__":
    main()
