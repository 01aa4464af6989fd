"""The validation split carved from the training data, per task, and the metric a trial is scored by.

- rating: a random 10% of the rows (seeded); rows whose user or item is absent from the rest are left
  out (counted); metric RMSE (lower is better).
- ranking (0/1 data): with distinct timestamps, each user's latest 20% of rows (users with >= 5 rows);
  without, a random 20% per user (seeded); metric NDCG@20 over the full catalogue, training items
  excluded (higher is better).
- next: each user's last item (users with >= 2 rows); metric NDCG@10 of that item after the history.

The test data is not an input of the tuner: all of this happens inside the training file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from recotorch.data import splits
from recotorch.data.interactions import Interactions
from recotorch.errors import OptionError
from recotorch.models.base import Estimator
from recotorch.tune.candidates import distinct_times

RATING_VALID_FRAC = 0.1
RANKING_VALID_FRAC = 0.2
RANKING_MIN_ROWS = 5


@dataclass(frozen=True)
class Protocol:
    """A task's validation split of the training data and its metric."""

    task: str
    metric: str
    direction: Literal["minimize", "maximize"]
    fit_part: Interactions  # what each trial trains on
    valid: Interactions  # what it is scored on
    description: str

    def score(self, model: Estimator) -> float:
        """The validation metric of a model fitted on `fit_part`."""
        if self.task == "rating":
            from recotorch.evaluate.protocol import rating_metrics

            return float(rating_metrics(model, self.valid)["RMSE"])
        if self.task == "ranking":
            from recotorch.evaluate.ranking import ranking_metrics_for

            return float(ranking_metrics_for(model, self.valid, ks=(20,))[0]["ndcg@20"])
        from recotorch.models.sequential.protocol import next_item_metrics

        return float(next_item_metrics(model, self.valid, ks=(10,))["NDCG@10"])

    def better(self, a: float, b: float) -> bool:
        return a < b if self.direction == "minimize" else a > b

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "metric": self.metric, "direction": self.direction,
                "fit_rows": len(self.fit_part), "valid_rows": len(self.valid), "description": self.description}


def carve(task: str, data: Interactions, seed: int) -> Protocol:
    """The validation protocol of `task` on the training data (OptionError when the data cannot take it)."""
    if task == "rating":
        if data.rating is None:
            raise OptionError("--task", "rating needs a rating column (--rating-col); for 0/1 data use --task ranking")
        split = splits.random(data, test_frac=RATING_VALID_FRAC, seed=seed)
        text = (f"random {RATING_VALID_FRAC:.0%} of the rows (seed {seed}); {len(split.cold):,} of them "
                "left out because their user or item is absent from the rest")
        return _checked(Protocol(task, "RMSE", "minimize", split.train, split.test, text))
    if task == "ranking":
        if distinct_times(data):
            split = splits.last_fraction(data, frac=RANKING_VALID_FRAC, min_rows=RANKING_MIN_ROWS)
            how = f"each user's latest {RANKING_VALID_FRAC:.0%} of rows (by time)"
        else:
            split = splits.random_per_user(data, frac=RANKING_VALID_FRAC, min_rows=RANKING_MIN_ROWS, seed=seed)
            how = f"a random {RANKING_VALID_FRAC:.0%} of each user's rows (no distinct timestamps; seed {seed})"
        text = (f"{how}, users with >= {RANKING_MIN_ROWS} rows; {len(split.cold):,} rows left out "
                "(item or user absent from the rest)")
        return _checked(Protocol(task, "NDCG@20", "maximize", split.train, split.test, text))
    if task == "next":
        if data.timestamp is None:
            raise OptionError("--time-col", "--task next orders each user's items by time, but the training "
                                            "file has no time column")
        split = splits.user_last(data)
        text = (f"each user's last item (users with >= 2 rows); {len(split.cold):,} left out "
                "(item absent from the rest)")
        return _checked(Protocol(task, "NDCG@10", "maximize", split.train, split.test, text))
    raise OptionError("--task", f"must be rating, ranking or next, got {task!r}")


def _checked(protocol: Protocol) -> Protocol:
    if len(protocol.valid) == 0:
        raise OptionError("--task", f"{protocol.task}: the training data is too small to carve a validation "
                                    f"split ({protocol.description})")
    return protocol
