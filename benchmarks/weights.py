"""Implicit weights (`--weights binary|count|sum|log1p`): which confidence should implicit models see?

Logs of different kinds, each split in time before anything is aggregated (the rows of each
user's latest 20% are test; users with >= 5 rows), then the training rows aggregated by the one
duplicate policy (`recotorch.data.aggregate`) and turned into confidences by `to_implicit`:

- ml-100k: every rating an interaction (so binary is "0/1 from ratings" and sum / log1p use the
  rating as strength; no repeats, so count == binary);
- purchases: `recotorch.data.synthetic.purchase_log` (string ids, ISO times, repeat purchases
  of favourites beside one-off trials; the repeats carry the taste signal);
- plays: `recotorch.data.synthetic.play_log` (one row per pair, heavy-tailed play counts in a
  column; count == binary, the signal is in sum / log1p).

Metric: NDCG@10 (and Recall@20) over the full catalogue on each user's later interactions with
items they had not had in train (a repeat of a training item cannot be recommended: seen items
are masked), for EASE, implicit ALS and item-kNN with their default settings.

    python benchmarks/weights.py          # prints the table, writes benchmarks/results/weights.{md,json}
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import machine, ml100k_dir, write_results

MODELS = [("EASE", "ease", {}), ("ALS", "als", {}), ("item-kNN", "itemknn", {})]
WEIGHTS = ("binary", "count", "sum", "log1p")


def logs():
    """(name, description, raw frame with user/item/value/timestamp columns named as the reader expects)."""
    import polars as pl

    from recotorch.data.readers import read_interactions
    from recotorch.data.synthetic import play_log, purchase_log

    ml = read_interactions(ml100k_dir() / "u.data", has_header=False, sep="\t").to_frame()
    yield "ml-100k", "943 users, 1,682 items, ratings 1-5 as strength", ml
    buys = purchase_log(seed=0).rename({"customer_id": "user", "sku": "item", "qty": "rating"})
    buys = buys.with_columns(pl.col("ts").str.to_datetime("%Y-%m-%dT%H:%M:%S").dt.epoch("s").alias("timestamp"))
    yield "purchases", ("synthetic: 3,000 customers, 1,500 SKUs; items tried by popularity and taste, re-bought "
                        "in proportion to taste"), buys.drop("ts")
    plays = play_log(seed=0).rename({"plays": "rating"})
    yield "plays", "synthetic: 2,000 users, 2,000 items, one row per pair, lognormal play counts", plays


def evaluate_log(frame):
    import torch

    from recotorch.data.implicit import to_implicit
    from recotorch.data.interactions import Interactions
    from recotorch.data.splits import last_fraction
    from recotorch.evaluate.ranking import ranking_metrics_for
    from recotorch.models import make_model

    rows = Interactions.from_frame(frame, duplicates="keep")  # split the rows in time first
    split = last_fraction(rows, 0.2, min_rows=5)
    train = split.train.aggregated(announce=False)
    test = split.test.aggregated(announce=False)
    seen = set((train.user_idx * train.n_items + train.item_idx).tolist())
    new = torch.tensor([k not in seen for k in (test.user_idx * test.n_items + test.item_idx).tolist()])
    test = test.subset(new)  # later interactions with items new to the user
    facts = {"rows": len(rows), "train rows": len(split.train), "train pairs": len(train),
             "repeat rows aggregated": train.meta["duplicates_aggregated"], "test pairs (new items)": len(test)}
    results = []
    for label, name, params in MODELS:
        for weights in WEIGHTS:
            tic = time.process_time()
            model = make_model(name, **params).fit(to_implicit(train, weights=weights))
            cpu = time.process_time() - tic
            metrics, _ = ranking_metrics_for(model, test, ks=(10, 20))
            results.append({"model": label, "weights": weights, "ndcg@10": metrics["ndcg@10"],
                            "recall@20": metrics["recall@20"], "fit cpu s": cpu})
    return facts, results


def main() -> None:
    import torch

    torch.set_num_threads(1)
    info = machine()
    load = os.getloadavg()
    payload = {"machine": info, "load_average": load, "logs": {}}
    sections = []
    ratios: dict[str, dict[str, list[float]]] = {}
    for name, description, frame in logs():
        facts, results = evaluate_log(frame)
        payload["logs"][name] = {"description": description, **facts, "results": results}
        base = {r["model"]: r["ndcg@10"] for r in results if r["weights"] == "binary"}
        lines = [f"### {name}: {description}", "",
                 ", ".join(f"{k} {v:,}" for k, v in facts.items()), "",
                 "| model | " + " | ".join(f"{w} NDCG@10 (x binary)" for w in WEIGHTS) + " |",
                 "|---|" + "---|" * len(WEIGHTS)]
        for label, _, _ in MODELS:
            cells = []
            for w in WEIGHTS:
                r = next(r for r in results if r["model"] == label and r["weights"] == w)
                ratio = r["ndcg@10"] / base[label] if base[label] else float("nan")
                ratios.setdefault(w, {}).setdefault(name, []).append(ratio)
                cells.append(f"{r['ndcg@10']:.4f} ({ratio:.2f}x)")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        sections.append("\n".join(lines))
        print("\n".join(lines), "\n", flush=True)
    summary = ["| weights | " + " | ".join(payload["logs"]) + " | geometric mean |",
               "|---|" + "---|" * (len(payload["logs"]) + 1)]
    means = {}
    for w in WEIGHTS:
        per_log = [sum(v) / len(v) for v in ratios[w].values()]
        all_ratios = torch.tensor([x for v in ratios[w].values() for x in v])
        means[w] = float(all_ratios.log().mean().exp())
        summary.append(f"| {w} | " + " | ".join(f"{x:.2f}x" for x in per_log) + f" | {means[w]:.2f}x |")
    payload["geometric_mean_vs_binary"] = means
    best = max(WEIGHTS, key=lambda w: (means[w], w == "binary"))
    payload["best_overall"] = best
    decision = (f"Best over every log and model (geometric mean of NDCG@10 / binary): **{best}** "
                f"({means[best]:.2f}x); `recotorch.data.implicit.DEFAULT_WEIGHTS` follows this table.")
    md = (f"# Implicit weights: binary vs count vs sum vs log1p\n\nMachine: {info['cpu']}, {info['cores']} cores, "
          f"1 torch thread, torch {info['torch']}, {info['date']}; load average {load[0]:.1f} / {load[1]:.1f} / "
          f"{load[2]:.1f} (quality numbers do not depend on it; `fit cpu s` in the JSON does a little).\n\n"
          "Each log is split in time before aggregation (each user's latest 20% of rows are test, users with >= 5 "
          "rows), the training rows aggregated (row count, value sum, latest time) and weighted by `to_implicit`; "
          "NDCG@10 over the full catalogue on the test pairs whose item the user did not have in train. Default "
          "model settings; confidences enter the models divided by their mean (`data.implicit.confidence`).\n\n"
          + "\n\n".join(sections) + "\n\n### NDCG@10 relative to binary (mean over EASE, ALS, item-kNN)\n\n"
          + "\n".join(summary) + "\n\n" + decision + "\n")
    print("\n".join(summary))
    write_results("weights", payload, md)


if __name__ == "__main__":
    main()
