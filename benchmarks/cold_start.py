"""Cold-start benchmark on ml-100k: new users by fold-in, new items by metadata, incremental updates.

Sections (all models with default hyper-parameters, one torch thread for stable timings on a
shared machine):
1. user-cold: 20% of users held out (seeds 0, 1, 2); each reveals its first k ratings by time;
   RMSE via fold-in against the item-bias baseline (MF also with the held-out users' age, gender
   and occupation as fold-in prior, `mf_coldstart`, MF fine-tuned on fold-in episodes, with
   that prior, and `bagged`, the mean of five `mf_coldstart` trained with seeds 0-4, with that prior:
   base and number of members chosen on validation users carved from the training users),
   NDCG@10 against most-popular;
2. fold-in latency: one new user with 5 ratings, median over repeated calls;
3. item-cold: 20% of items held out (seed 0); the hybrid ranks them from metadata only;
4. incremental: fit on the first 90% by time; the last 10% split at random into an update half and
   a test half; RMSE before, after `update`, after `update(epochs=2)` and after a full refit.

Writes benchmarks/results/cold_start.{json,md}.

    python benchmarks/cold_start.py
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import machine, ml100k_dir, write_results

torch.set_num_threads(1)

from recotorch.artifacts import load  # noqa: E402
from recotorch.data.implicit import to_implicit  # noqa: E402
from recotorch.data.movielens import load_movielens  # noqa: E402
from recotorch.evaluate import cold  # noqa: E402
from recotorch.evaluate.protocol import Report, rating_metrics  # noqa: E402
from recotorch.models import make_model  # noqa: E402
from recotorch.models.hybrid import HybridMF  # noqa: E402
from recotorch.online import fold_in, recommend_for_new_user, update  # noqa: E402

SEEDS = (0, 1, 2)
DEMO = "mf fold-in, demographic prior"
META = "mf_coldstart fold-in, demographic prior"  # item side fine-tuned on fold-in episodes
BAG = "bagged mf_coldstart x5 fold-in, demographic prior"  # mean of 5 seeds; chosen on validation users
BAG_OPTIONS = {"base": "mf_coldstart", "members": 5}


def user_cold(data: Any, seed: int) -> tuple[Report, Report, dict[str, Any]]:
    split = cold.user_cold_split(data, 0.2, seed=seed)
    bias, mf = make_model("bias").fit(split.train), make_model("mf").fit(split.train)
    meta = make_model("mf_coldstart").fit(split.train)
    bag = make_model("bagged", **BAG_OPTIONS).fit(split.train)
    hybrid = HybridMF().fit(split.train)
    positives = to_implicit(split.train, threshold=4)
    pop, ease, als = (make_model(n).fit(positives) for n in ("pop", "ease", "als"))
    rating = cold.user_cold_rating([("bias fold-in", bias), ("mf fold-in", mf), (DEMO, mf), (META, meta),
                                    (BAG, bag), ("hybrid fold-in", hybrid)], split, item_bias=bias,
                                   feature_prior={DEMO, META, BAG})
    ranking = cold.user_cold_ranking([("most popular", pop), ("ease fold-in", ease), ("als fold-in", als),
                                      ("mf fold-in (by rating)", mf)], split, demographics=pop)
    return rating, ranking, {"mf": mf, "mf_coldstart": meta, "bagged": bag, "ease": ease, "als": als, "pop": pop,
                             "train": split.train}


def latency(models: dict[str, Any]) -> dict[str, float]:
    """Median milliseconds of `recommend_for_new_user` (top 10) and of `fold_in` for one user, 5 ratings."""
    frame = models["train"].to_frame()
    user = frame["user"][0]
    rows = frame.filter(frame["user"] == user).head(5)
    items, ratings = rows["item"].to_list(), rows["rating"].to_list()
    out = {}
    for name in ("mf", "mf_coldstart", "bagged", "als", "ease", "pop"):
        model = models[name]
        for label, call in (("recommend", lambda m=model: recommend_for_new_user(m, items, ratings, k=10)),
                            ("fold_in", lambda m=model: fold_in(m, items, ratings))):
            call()
            times = []
            for _ in range(50):
                tic = time.perf_counter()
                call()
                times.append((time.perf_counter() - tic) * 1000)
            out[f"{name} {label} ms"] = statistics.median(times)
    return out


def item_cold(data: Any) -> tuple[Report, Report]:
    split = cold.item_cold_split(data, 0.2, seed=0)
    ranker = HybridMF(task="ranking").fit(to_implicit(split.train))
    rater = HybridMF(task="rating").fit(split.train)
    no_meta = HybridMF(task="ranking", item_features=()).fit(to_implicit(split.train))
    scorers = [*cold.genre_baselines(split.train),
               ("hybrid ranking, no item features", lambda u, f: no_meta.score_new_items(u, f)),
               ("hybrid (task=rating)", lambda u, f: rater.score_new_items(u, f)),
               ("hybrid (task=ranking)", lambda u, f: ranker.score_new_items(u, f))]
    ranking = cold.item_cold_ranking(scorers, split)
    bias, mean = make_model("bias").fit(split.train), make_model("mean").fit(split.train)
    lookup = {i: j for j, i in enumerate(split.items["id"].to_list())}

    def hybrid_predict(users: list[Any], items: list[Any]) -> Any:
        scores = rater.score_new_items(sorted(set(users)), split.items)
        row = {u: j for j, u in enumerate(sorted(set(users)))}
        return scores[[row[u] for u in users], [lookup[i] for i in items]].numpy()

    rating = cold.item_cold_rating([("global mean", lambda u, i: mean.predict(u, i).values),
                                    ("mean + user bias (item unknown)", lambda u, i: bias.predict(u, i).values),
                                    ("hybrid from metadata", hybrid_predict)], split)
    return ranking, rating


def incremental(data: Any) -> Report:
    order = torch.argsort(data.timestamp, stable=True)
    cut = int(0.9 * len(data))
    late = order[cut:]
    perm = torch.randperm(late.numel(), generator=torch.Generator().manual_seed(0))
    upd, test = data.subset(late[perm[: late.numel() // 2]]), data.subset(late[perm[late.numel() // 2 :]])
    base = data.subset(order[:cut])
    report = Report("Incremental update vs full refit (fit on the first 90% by time; "
                    "update with a random half of the last 10%, test on the other half)")
    tmp = Path(tempfile.mkdtemp())
    try:
        for name in ("mf", "bias"):
            tic = time.perf_counter()
            model = make_model(name).fit(base)
            fit_s = time.perf_counter() - tic
            model.save(tmp / name)
            report.rows.append({"model": name, "variant": "parent only", **rating_metrics(model, test), "s": fit_s})
            for label, epochs in (("update (closed form)", 0), ("update + 2 epochs fine-tune", 2)):
                if name == "bias" and epochs:
                    continue
                tic = time.perf_counter()
                out = update(tmp / name, upd, tmp / f"{name}-{epochs}", epochs=epochs)
                secs = time.perf_counter() - tic
                report.rows.append({"model": name, "variant": label, **rating_metrics(load(out), test), "s": secs})
            tic = time.perf_counter()
            full = make_model(name).fit(data.subset(torch.cat([order[:cut], late[perm[: late.numel() // 2]]])))
            secs = time.perf_counter() - tic
            report.rows.append({"model": name, "variant": "full refit", **rating_metrics(full, test), "s": secs})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report.notes.append("fallback = test rows answered by the bias baseline (user or item unknown to the model)")
    return report


def _mean_rows(reports: list[Report], metric: str, k: int) -> dict[str, float]:
    values: dict[str, list[float]] = {}
    for rep in reports:
        for row in rep.rows:
            if row["k"] == k:
                values.setdefault(row["model"], []).append(row[metric])
    return {m: statistics.mean(v) for m, v in values.items()}


def main() -> None:
    tic = time.perf_counter()
    data = load_movielens(ml100k_dir())
    ratings, rankings, first = [], [], None
    for seed in SEEDS:
        rating, ranking, models = user_cold(data, seed)
        rating.title += f" (seed {seed})"
        ranking.title += f" (seed {seed})"
        ratings.append(rating)
        rankings.append(ranking)
        first = first or models
    timing = latency(first)
    item_rank, item_rate = item_cold(data)
    inc = incremental(data)
    rmse5, ndcg5 = _mean_rows(ratings, "RMSE", 5), _mean_rows(rankings, "ndcg@10", 5)
    gain = 1 - rmse5["mf fold-in"] / rmse5["item bias (user unknown)"]
    gain_demo = 1 - rmse5[DEMO] / rmse5["item bias (user unknown)"]
    gain_meta = 1 - rmse5[META] / rmse5["item bias (user unknown)"]
    gain_bag = 1 - rmse5[BAG] / rmse5["item bias (user unknown)"]
    summary = {
        "user_cold_k5_rmse_mean_over_seeds": rmse5,
        "mf_foldin_rmse_gain_vs_item_bias_k5": gain,
        "mf_foldin_demographic_rmse_gain_vs_item_bias_k5": gain_demo,
        "mf_coldstart_foldin_demographic_rmse_gain_vs_item_bias_k5": gain_meta,
        "bagged_mf_coldstart_x5_foldin_demographic_rmse_gain_vs_item_bias_k5": gain_bag,
        "user_cold_k5_ndcg10_mean_over_seeds": ndcg5,
        "latency_ms": timing,
        "total_s": time.perf_counter() - tic,
    }
    info = machine()
    lines = [
        "# Cold-start benchmark (ml-100k)", "",
        f"Machine: {info['cpu']}, {info['cores']} cores (shared), torch {info['torch']}, "
        f"{info['threads']} thread, {info['date']}. Default hyper-parameters.", "",
        "## Summary (user-cold, k = 5 revealed ratings, mean over seeds " + ", ".join(map(str, SEEDS)) + ")", "",
        f"- RMSE: item bias {rmse5['item bias (user unknown)']:.4f}, bias fold-in {rmse5['bias fold-in']:.4f}, "
        f"MF fold-in {rmse5['mf fold-in']:.4f} ({gain:.2%} below item bias), MF fold-in with the demographic "
        f"prior {rmse5[DEMO]:.4f} ({gain_demo:.2%} below item bias), MF trained for fold-in (`mf_coldstart`) "
        f"with the demographic prior {rmse5[META]:.4f} ({gain_meta:.2%} below item bias), the mean of five "
        f"`mf_coldstart` seeds (`bagged`) with that prior {rmse5[BAG]:.4f} ({gain_bag:.2%} below item bias), "
        f"hybrid fold-in {rmse5['hybrid fold-in']:.4f}.",
        "- NDCG@10: " + ", ".join(f"{m} {v:.4f}" for m, v in ndcg5.items()) + ".",
        "- Latency of one new user (5 ratings), median ms: "
        + ", ".join(f"{k} {v:.2f}" for k, v in timing.items()) + ".", "",
        *[r.to_markdown() for r in ratings], *[r.to_markdown() for r in rankings],
        item_rank.to_markdown(), item_rate.to_markdown(), inc.to_markdown(),
        f"Total {summary['total_s']:.0f} s.",
    ]
    md = "\n".join(lines) + "\n"
    print(md)
    reports = [*ratings, *rankings, item_rank, item_rate, inc]
    payload = [{"title": r.title, "rows": r.rows, "notes": r.notes} for r in reports]
    write_results("cold_start", {"machine": info, "summary": summary, "reports": payload}, md)


if __name__ == "__main__":
    main()
