"""The leave-one-out next-item protocol: full ranking over all items, history items excluded.

Each test user's target is their earliest test row (by time, ties by file order); the history is
the sequence the model stored for that user. A target the model cannot rank (its user or item was
not in training) counts as a miss, so every test user is in the denominator.
"""

from __future__ import annotations

import math

import torch

from recotorch.data.interactions import Interactions
from recotorch.data.sequences import to_sequences
from recotorch.models.sequential.base import SequenceModel


def next_item_metrics(model: SequenceModel, test: Interactions, ks: tuple[int, ...] = (10, 20)) -> dict[str, float]:
    """NDCG@K, HR@K and MRR@K of `model` on each test user's next item (raw ids of `test`), plus counts."""
    seqs = to_sequences(test)
    users = (seqs.lengths() > 0).nonzero().flatten()
    target_rows = seqs.items[seqs.indptr[users]]  # test vocab indices
    user_idx = torch.from_numpy(model.users_.index(test.users.ids.gather(users.numpy())))
    item_idx = torch.from_numpy(model.items_.index(test.items.ids.gather(target_rows.numpy())))
    known = (user_idx >= 0) & (item_idx >= 0)
    ranks = torch.full((users.numel(),), math.inf, dtype=torch.float64)
    if known.any():
        history = model.sequences_.select(user_idx[known])
        ranks[known] = model.next_item_ranks(history, item_idx[known]).double()
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks <= k
        out[f"NDCG@{k}"] = float(torch.where(hit, 1.0 / torch.log2(ranks + 1), 0.0).mean()) if ranks.numel() else 0.0
        out[f"HR@{k}"] = float(hit.double().mean()) if ranks.numel() else 0.0
        out[f"MRR@{k}"] = float(torch.where(hit, 1.0 / ranks, 0.0).mean()) if ranks.numel() else 0.0
    out["users"] = int(users.numel())
    out["unrankable"] = int((~known).sum())
    return out
