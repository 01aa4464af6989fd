"""Top-N benchmark on ml-100k: every ranking model beside the baselines, full-catalogue metrics.

Protocol (`recotorch.evaluate.ranking.ranking_split`): ratings >= 4 are positives; for each user
with >= 5 positives the latest 20% by timestamp are test; test items unseen in train dropped.
Prints a table and writes benchmarks/results/ranking.{json,md}.

    python benchmarks/ranking.py
"""

from __future__ import annotations

import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import machine, ml100k_dir, peak_rss_mb, write_results

MODELS = [
    ("most popular", "pop", {}),
    ("item-kNN cosine", "itemknn", {}),
    ("item-kNN BM25", "itemknn", {"weighting": "bm25", "neighbours": 200}),
    ("item-kNN BM25 + recency", "itemknn", {"weighting": "bm25", "neighbours": 200, "half_life": 0.25}),
    ("RP3beta", "rp3beta", {}),
    ("EASE", "ease", {}),
    ("EASE + recency", "ease", {"reg": 400.0, "half_life": 0.2}),  # chosen on a split of the train part
    ("implicit ALS", "als", {}),
    ("BPR-MF", "bpr", {}),
    ("BCE-MF (course 0/1)", "bce", {}),
    ("sampled-softmax MF", "ranking_mf", {}),
]


def main() -> None:
    from recotorch.data.movielens import load_movielens
    from recotorch.evaluate.ranking import compare_ranking_models, ranking_split
    from recotorch.models import make_model

    split = ranking_split(load_movielens(ml100k_dir()))
    models = [(label, make_model(name, **opts)) for label, name, opts in MODELS]
    report = compare_ranking_models(models, split.train, split.test, title="ml-100k top-N (full catalogue)")
    columns = ["model", "ndcg@10", "ndcg@20", "recall@10", "recall@20", "map@10", "mrr", "coverage@10",
               "coverage@20", "fit s", "top-20 s"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in report.rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    info = machine()
    md = (f"# Top-N benchmark (ml-100k)\n\nMachine: {info['cpu']}, {info['cores']} cores, {info['threads']} torch "
          f"threads, torch {info['torch']}, {info['date']}.\n\n"
          f"Protocol: ratings >= 4 are positives; per user with >= 5 positives the latest 20% by time are test "
          f"({len(split.test):,} test rows; {len(split.cold):,} rows on items unseen in train dropped). "
          "Full-catalogue ranking with each user's training items masked. `top-20 s` = recommend top-20 for all "
          "users. The recency settings (EASE reg 400 / half_life 0.2; item-kNN half_life 0.25) and RP3beta's "
          "alpha/beta were chosen on a validation split carved from the training part (each user's last 20% of "
          "training positives), never on this test part.\n\n" + "\n".join(lines) + "\n\n"
          + "\n".join(f"- {n}" for n in report.notes) + "\n")
    print(md)
    write_results("ranking", {"machine": info, "rows": report.rows, "notes": report.notes,
                              "peak_rss_mb": peak_rss_mb()}, md)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if value < 100 else f"{value:.1f}"
    return str(value)


if __name__ == "__main__":
    main()
