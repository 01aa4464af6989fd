"""Models after training: new users folded in from raw ids, users with no history, incremental updates.

Nothing here is model-specific: every model answers through its own capability methods
(`fold_in`, `score_new_users`, `cold_scores`, `update`; see `recotorch.models.base`).
"""

from recotorch.online.foldin import (
    cold_scores,
    fold_in,
    fold_in_indices,
    new_user_pair_scores,
    new_user_scores,
    predict_for_new_user,
    recommend_for_new_user,
    recommend_from_history,
    scores_for_history,
)
from recotorch.online.popularity import demographic_popularity, item_counts
from recotorch.online.updates import update

__all__ = ["cold_scores", "demographic_popularity", "fold_in", "fold_in_indices", "item_counts",
           "new_user_pair_scores", "new_user_scores", "predict_for_new_user", "recommend_for_new_user",
           "recommend_from_history", "scores_for_history", "update"]
