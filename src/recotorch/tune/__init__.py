"""The tuner: searches model families and their hyper-parameters on a validation split carved from the
training data, prunes bad trials early, refits the winner on all of it (`recotorch tune`,
`recotorch fit --model auto`; docs/tuning.md).

- `candidates`: which models a task searches, and which cannot fit the data (skipped, with the reason);
- `space`: each model's declared search space (`models.config.search_space`) as Optuna suggestions;
- `protocol`: the validation split per task and the metric it is scored by;
- `measure`: seconds and peak memory of one fit;
- `storage`: the study's storage (journal file, SQLite or PostgreSQL) and exact trial claims for workers;
- `search`: the trial loop, pruning, the refit; `record`: search.json, leaderboard, report and plots;
- `folder`: where a search may write (the output-path rules of `recotorch.outputs`).
"""

from __future__ import annotations

from recotorch.tune.search import SearchResult, Settings, run_search

__all__ = ["SearchResult", "Settings", "run_search"]
