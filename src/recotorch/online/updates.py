"""Incremental updates: fold new interactions into a saved model and write a new model directory.

The source directory is only read. Vocabularies are extended (`Vocab.extend`; existing indices
keep their meaning), seen sets merged, side features extended, then the model's own `update`
(the capability; see each model) folds the new rows in, and the result is saved as a new
directory whose model.json `extra` records `parent` (the source path), `version` (parent's + 1)
and `update` (row and id counts). See docs/incremental.md for how this compares with a refit.

    >>> update("models/mf-v1", new_rows, "models/mf-v2")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import torch

from recotorch.artifacts import load, read_meta, save
from recotorch.data.interactions import CSR, Interactions, align_features, build_csr
from recotorch.errors import UnsupportedError
from recotorch.models.base import NewRows

__all__ = ["update"]


def update(model_dir: str | Path, new_interactions: Interactions, out_dir: str | Path, *, epochs: int = 0,
           reg: float | None = None, lr: float | None = None) -> Path:
    """Update the model saved in `model_dir` with `new_interactions`; write it to `out_dir`; return it.

    `reg` is the prior strength of the closed-form solves (model default); `epochs`/`lr` (default a
    tenth of the model's) control the optional fine-tune of gradient rating models. Models without
    the "update" capability raise `UnsupportedError`. Nothing is retrained from scratch.
    """
    src, out = Path(model_dir).resolve(), Path(out_dir).resolve()
    if src == out:
        raise ValueError("write the update to a new directory: the source model stays untouched")
    if len(new_interactions) == 0:
        raise ValueError("no new interactions to add")
    model = load(src)
    if not model.supports("update"):
        raise UnsupportedError(f"incremental update is not available for {type(model).__name__} ({model.name!r})")
    frame = new_interactions.to_frame()
    old_users, old_items, old_seen = model.n_users, model.n_items, model.seen_
    model.users_ = model.users_.extend(frame["user"])
    model.items_ = model.items_.extend(frame["item"])
    u = torch.from_numpy(model.users_.index(frame["user"]))
    i = torch.from_numpy(model.items_.index(frame["item"]))
    r = torch.from_numpy(frame["rating"].to_numpy().astype("float32")) if "rating" in frame.columns else None
    model.seen_ = _merge_seen(old_seen, u, i, model.n_users)
    model.user_features_ = _extend_features(model.user_features_, new_interactions.user_features, model.users_)
    model.item_features_ = _extend_features(model.item_features_, new_interactions.item_features, model.items_)
    model.update(NewRows(u, i, r, old_seen, old_users, old_items), reg=reg, epochs=epochs, lr=lr)
    meta = read_meta(src)
    model.lineage_ = {"parent": str(src), "version": int(meta["extra"].get("version", 0)) + 1,
                      "update": {"rows": len(new_interactions), "new_users": model.n_users - old_users,
                                 "new_items": model.n_items - old_items, "epochs": epochs}}
    return save(model, out)


def _merge_seen(seen: CSR, u: torch.Tensor, i: torch.Tensor, n_users: int) -> CSR:
    old_u = torch.repeat_interleave(torch.arange(seen.n_rows), seen.row_lengths())
    users, items = torch.cat([old_u, u]), torch.cat([seen.indices, i])
    n_cols = int(items.max()) + 1 if items.numel() else 1
    keys = torch.unique(users * n_cols + items)  # distinct pairs, sorted by (user, item)
    return build_csr(keys // n_cols, keys % n_cols, n_users)


def _extend_features(old: pl.DataFrame | None, given: pl.DataFrame | None, vocab: Any) -> pl.DataFrame | None:
    """Old rows kept; rows for new ids from `given` (matched on `id`), else nulls."""
    if old is None:
        return None
    if given is not None:
        given = given.filter(~given["id"].is_in(old["id"].implode())).select(
            [c for c in old.columns if c in given.columns])
        old = pl.concat([old, given.cast({c: old.schema[c] for c in given.columns})], how="diagonal")
    return align_features(old, vocab)
