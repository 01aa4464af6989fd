"""Which model families a task searches, and which of them cannot fit the data.

Candidates are listed cheapest first (the first trials run each family at its defaults, in this
order, so a short budget still sees the quick strong ones). Names not registered (an optional model
missing from this build) are left out; a model that cannot fit the data is skipped with its reason,
which the search prints and records.
"""

from __future__ import annotations

from collections.abc import Sequence

from recotorch.data.interactions import Interactions
from recotorch.errors import OptionError
from recotorch.models import MODELS, make_model
from recotorch.models.config import describe

TASKS = ("rating", "ranking", "next")
CANDIDATES: dict[str, tuple[str, ...]] = {
    "rating": ("bias", "mf", "knn_baseline", "svdpp", "ncf", "bagged", "blend"),
    "ranking": ("pop", "itemknn", "rp3beta", "ease", "als", "bpr", "ranking_mf"),
    "next": ("transitions", "knn_last", "gru4rec", "sasrec"),
}
# Fields that only mean something with timestamps (searched only when the data has distinct ones).
NEEDS_TIME = frozenset({"half_life"})
DENSE_ITEM_ITEM = frozenset({"ease"})  # a fit holds a dense n_items x n_items float32 matrix (inverted in place)


def distinct_times(data: Interactions) -> bool:
    """True when the data has a time column with more than one value."""
    ts = data.timestamp
    return ts is not None and len(ts) > 1 and bool((ts != ts[0]).any())


def memory_estimate(name: str, data: Interactions) -> int | None:
    """Bytes a fit of `name` needs beyond the data, where that is what rules a model out; else None."""
    if name in DENSE_ITEM_ITEM:
        return data.n_items * data.n_items * 4 + (1 << 28)  # the matrix, and blocks and slack
    return None


def skip_reason(name: str, task: str, data: Interactions, memory_limit: int) -> str | None:
    """Why model `name` cannot be searched for `task` on `data` (None when it can)."""
    model = make_model(name)  # at its defaults: what it is, not how it is set
    fields = {f.name for f in describe(name)}
    sequential = model.supports("next_items")
    if task == "next" and not sequential:
        return "not a next-item model"
    if task != "next" and sequential:
        return "a next-item model (use --task next)"
    if task == "rating" and model.task != "rating":
        return "does not predict ratings"
    if task == "ranking" and model.task != "ranking":
        return "predicts ratings, not rankings"
    if task == "next" and data.timestamp is None:
        return "needs timestamps"
    needed = memory_estimate(name, data)
    if needed is not None and needed > memory_limit:
        return (f"needs about {needed / 2**30:.1f} GiB for {data.n_items:,} items, over the memory limit "
                f"{memory_limit / 2**30:.1f} GiB (--memory-gb)")
    if "item_features" in fields or "user_features" in fields:
        return "needs side features"
    return None


def choose(task: str, data: Interactions, memory_limit: int, models: Sequence[str] | None = None
           ) -> tuple[list[str], dict[str, str]]:
    """(candidates to search, {skipped model: reason}) for `task` on `data`; `models` narrows the list."""
    if task not in TASKS:
        raise OptionError("--task", f"must be rating, ranking or next, got {task!r}")
    if models:
        unknown = [m for m in models if m not in MODELS]
        if unknown:
            raise OptionError("--models", f"unknown model(s) {unknown}; choose from {sorted(MODELS)}")
        listed = list(dict.fromkeys(models))
    else:
        listed = [m for m in CANDIDATES[task] if m in MODELS]
    chosen, skipped = [], {}
    for name in listed:
        reason = skip_reason(name, task, data, memory_limit)
        if reason is None:
            chosen.append(name)
        else:
            skipped[name] = reason
    if not chosen:
        raise OptionError("--models" if models else "--task",
                          f"no model can be searched for --task {task} on this data: "
                          + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return chosen, skipped
