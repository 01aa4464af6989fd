"""Incremental updates: fold new interactions into a saved model and write a new model directory.

The source directory is only read. Vocabularies are extended (`Vocab.extend`; existing indices
keep their meaning), seen sets merged, side features extended, and the result is saved as a new
directory whose model.json `extra` records `parent` (the source path), `version` (parent's + 1)
and `update` (row and id counts). What changes, by model:

- rating factor models (`mf`): the frozen-side closed-form solves of `recotorch.models.foldin`.
  New users are folded in; new items get [q_i, b_i] by the same ridge solve against the
  (frozen) user factors; known users with new ratings are re-solved with their old vector as
  the prior, weighted by the Gram matrix of their old items (recursive least squares: the old
  ratings are not stored, their information is). Known items stay frozen. `epochs > 0` then
  fine-tunes all tables on the new rows plus a replay of the old pairs labelled with the parent
  model's own predictions (distillation), so old users are not forgotten.
- `als`: exact ALS user solves over old (binary) plus new items, ALS item solves for new items.
- `bias`: shrunken-mean updates of the user and item biases (old counts from the seen sets).
- `pop`: counts added. `ease`/`itemknn`: seen sets only; new items get no links (refit to link them).

See docs/incremental.md for how this compares with a full refit on ml-100k.

    >>> update("models/mf-v1", new_rows, "models/mf-v2")
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import polars as pl
import torch

from recotorch.artifacts import load, read_meta, save
from recotorch.data.interactions import CSR, Interactions, align_features, build_csr
from recotorch.models.base import Estimator
from recotorch.models.foldin import _EPS, DEFAULT_REG, _kind

__all__ = ["update"]


def update(model_dir: str | Path, new_interactions: Interactions, out_dir: str | Path, *, epochs: int = 0,
           reg: float | None = None, lr: float | None = None) -> Path:
    """Update the model saved in `model_dir` with `new_interactions`; write it to `out_dir`; return it.

    `reg` is the prior strength of the closed-form solves (default `foldin.DEFAULT_REG` for rating
    factor models, the model's own `reg` for ALS). `epochs`/`lr` (default a tenth of the model's)
    control the optional fine-tune of gradient rating models. Nothing is retrained from scratch.
    """
    src, out = Path(model_dir).resolve(), Path(out_dir).resolve()
    if src == out:
        raise ValueError("write the update to a new directory: the source model stays untouched")
    if len(new_interactions) == 0:
        raise ValueError("no new interactions to add")
    model = load(src)
    kind = _kind(model)
    frame = new_interactions.to_frame()
    old_users, old_items = model.n_users, model.n_items
    model.users_ = model.users_.extend(frame["user"])
    model.items_ = model.items_.extend(frame["item"])
    u = torch.from_numpy(model.users_.index(frame["user"]))
    i = torch.from_numpy(model.items_.index(frame["item"]))
    r = torch.from_numpy(frame["rating"].to_numpy().astype("float32")) if "rating" in frame.columns else None
    old_seen = model.seen_
    model.seen_ = _merge_seen(old_seen, u, i, model.n_users)
    for side, vocab, given in (("user", model.users_, new_interactions.user_features),
                               ("item", model.items_, new_interactions.item_features)):
        setattr(model, f"{side}_features_", _extend_features(getattr(model, f"{side}_features_"), given, vocab))
    if kind == "factors":
        parent = _snapshot(model, old_users, old_items) if epochs > 0 else None
        _update_factors(model, old_seen, u, i, _need(r, model), old_users, old_items, reg)
        if parent is not None:
            _fine_tune(model, u, i, _need(r, model), old_seen, parent, epochs, lr)
    elif kind == "als":
        _update_als(model, old_seen, u, i, r, old_users, old_items, reg)
    elif kind == "bias":
        _update_bias(model, old_seen, u, i, _need(r, model), old_users, old_items)
    elif kind == "pop":
        weights = r if model.use_weights and r is not None else torch.ones(i.numel())
        grown = torch.zeros(model.n_items)
        grown[:old_items] = model.popularity_
        model.popularity_ = grown.index_add_(0, i, weights)
    else:
        _update_item_item(model, old_items)
    meta = read_meta(src)
    lineage = {"parent": str(src), "version": int(meta["extra"].get("version", 0)) + 1,
               "update": {"rows": len(new_interactions), "new_users": model.n_users - old_users,
                          "new_items": model.n_items - old_items, "epochs": epochs}}
    state = model._state
    model._state = lambda: (lambda t, e: (t, {**e, **lineage}))(*state())  # type: ignore[method-assign]
    return save(model, out)


def _need(r: torch.Tensor | None, model: Estimator) -> torch.Tensor:
    if r is None:
        raise ValueError(f"{type(model).__name__} predicts ratings: the new interactions need a rating column")
    return r


# ---- shared pieces ---------------------------------------------------------------------------
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


def _padded(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, which: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per entry of `which` (B,), its (cols, values) from the COO lists, padded: (B, L) with -1 / 0."""
    size = max(int(rows.max()) if rows.numel() else 0, int(which.max()) if which.numel() else 0) + 1
    pos = torch.full((size,), -1, dtype=torch.int64)
    pos[which] = torch.arange(which.numel())
    b = pos[rows]
    keep = b >= 0
    b, cols, values = b[keep], cols[keep], values[keep]
    order = torch.argsort(b, stable=True)
    b, cols, values = b[order], cols[order], values[order]
    counts = torch.bincount(b, minlength=which.numel())
    slot = torch.arange(b.numel()) - (torch.cumsum(counts, 0) - counts)[b]
    width = int(counts.max()) if b.numel() else 0
    idx = torch.full((which.numel(), width), -1, dtype=torch.int64)
    val = torch.zeros(which.numel(), width)
    idx[b, slot], val[b, slot] = cols, values.float()
    return idx, val


def _ridge(other: torch.Tensor, idx: torch.Tensor, z: torch.Tensor, precision: torch.Tensor,
           mean: torch.Tensor) -> torch.Tensor:
    """argmin_x sum_l (a_l . x - z_l)^2 + (x - mean)^T P (x - mean), a_l = other[idx_l]; batched (B, D)."""
    mask = (idx >= 0).float()
    a = other[idx.clamp(min=0)] * mask[..., None]  # (B, L, D)
    gram = a.transpose(1, 2) @ a + precision
    rhs = torch.einsum("bld,bl->bd", a, z * mask) + (precision @ mean.unsqueeze(-1)).squeeze(-1)
    return torch.linalg.solve(gram, rhs)


# ---- rating factor models --------------------------------------------------------------------
def _tables(m: Any) -> list[torch.Tensor]:
    return [m.user_factors.weight, m.user_bias.weight, m.item_factors.weight, m.item_bias.weight]


def _update_factors(model: Any, old_seen: CSR, u: torch.Tensor, i: torch.Tensor, r: torch.Tensor,
                    old_users: int, old_items: int, reg: float | None) -> None:
    """Closed-form solves in the model's logit space: new users, then new items, then all affected users."""
    from recotorch.models.mf import DotBias

    if not isinstance(model.module_, DotBias):
        raise TypeError(f"incremental update of {type(model).__name__} is not supported (needs a DotBias module)")
    pu, bu, qi, bi = (t.detach().cpu() for t in _tables(model.module_))
    x_users, x_items = torch.cat([pu, bu], 1), torch.cat([qi, bi], 1)  # (n, d+1): [vector, bias]
    lam = DEFAULT_REG if reg is None else reg
    prior_u = torch.diag(lam / x_users.var(0).clamp(min=1e-6))
    prior_i = torch.diag(lam / x_items.var(0).clamp(min=1e-6))
    z = r.clone()
    if model.rating_range_ is not None:
        lo, hi = model.rating_range_
        y = ((r - lo) / (hi - lo)).clamp(_EPS, 1 - _EPS)
        z = torch.log(y / (1 - y))
    users = torch.cat([x_users, x_users.mean(0).expand(model.n_users - old_users, -1)])
    items = torch.cat([x_items, x_items.mean(0).expand(model.n_items - old_items, -1)])
    affected = torch.unique(u)
    old_aff = affected[affected < old_users]
    # prior of each affected user: population for new users; old vector + its old items' Gram for known ones
    d1 = x_users.shape[1]
    precision = prior_u.expand(affected.numel(), d1, d1).clone()
    mean = x_users.mean(0).expand(affected.numel(), -1).clone()
    if old_aff.numel():
        pos = torch.searchsorted(affected, old_aff)
        a = torch.cat([qi, torch.ones(old_items, 1)], 1)
        outer = (a[:, :, None] * a[:, None, :]).reshape(old_items, -1)
        old_u = torch.repeat_interleave(torch.arange(old_seen.n_rows), old_seen.row_lengths())
        rows = torch.sparse_coo_tensor(torch.stack([old_u, old_seen.indices]), torch.ones(old_u.numel()),
                                       (old_seen.n_rows, old_items)).index_select(0, old_aff)
        precision[pos] += torch.sparse.mm(rows, outer).view(-1, d1, d1)
        mean[pos] = x_users[old_aff]

    def solve_users(row_mask: torch.Tensor) -> None:
        idx, zz = _padded(u[row_mask], i[row_mask], z[row_mask], affected)
        target = zz - items[idx.clamp(min=0), -1]  # logit minus the item bias
        design = torch.cat([items[:, :-1], torch.ones(items.shape[0], 1)], 1)
        users[affected] = _ridge(design, idx, target, precision, mean)

    solve_users(i < old_items)  # 1. users against the known (frozen) items
    new_items = torch.arange(old_items, model.n_items)
    if new_items.numel():  # 2. new items against the (now extended) user side
        idx, zz = _padded(i, u, z, new_items)
        target = zz - users[idx.clamp(min=0), -1]
        design = torch.cat([users[:, :-1], torch.ones(users.shape[0], 1)], 1)
        items[new_items] = _ridge(design, idx, target, prior_i.expand(new_items.numel(), d1, d1),
                                  x_items.mean(0).expand(new_items.numel(), -1))
        solve_users(torch.ones_like(i, dtype=torch.bool))  # 3. users again, new items included
    _install(model, users, items, u, i, r, old_users, old_items)


def _install(model: Any, users: torch.Tensor, items: torch.Tensor, u: torch.Tensor, i: torch.Tensor,
             r: torch.Tensor, old_users: int, old_items: int) -> None:
    """A module of the new size holding these tables; the fallback baseline extended to new ids."""
    module = model._build_module(model.n_users, model.n_items)
    with torch.no_grad():
        for table, values in zip(_tables(module), (users[:, :-1], users[:, -1:], items[:, :-1], items[:, -1:]),
                                 strict=True):
            table.copy_(values)
    model.module_ = module.to(model.module_device).eval()
    mean, user_bias, item_bias = model.baseline_
    ub = torch.cat([user_bias, torch.zeros(model.n_users - old_users)])
    ib = torch.cat([item_bias, torch.zeros(model.n_items - old_items)])
    new_i, new_u = i >= old_items, u >= old_users  # shrunken mean residuals, as `fit_biases`
    resid_i = torch.bincount(i[new_i], r[new_i] - mean - ub[u[new_i]], model.n_items)
    ib[old_items:] = (resid_i / (torch.bincount(i[new_i], minlength=model.n_items) + 10.0))[old_items:]
    resid_u = torch.bincount(u[new_u], r[new_u] - mean - ib[i[new_u]], model.n_users)
    ub[old_users:] = (resid_u / (torch.bincount(u[new_u], minlength=model.n_users) + 15.0))[old_users:]
    model.baseline_ = (mean, ub, ib)


def _snapshot(model: Any, old_users: int, old_items: int) -> Any:
    """A frozen copy of the parent's module, to label the replayed old pairs."""
    parent = model._build_module(old_users, old_items)
    parent.load_state_dict(model.module_.state_dict())
    return parent.eval()


def _fine_tune(model: Any, u: torch.Tensor, i: torch.Tensor, r: torch.Tensor, old_seen: CSR, parent: Any,
               epochs: int, lr: float | None) -> None:
    """A few epochs on the new rows plus the old pairs labelled by the parent model (distillation)."""
    from recotorch.train.trainer import Trainer

    old_u = torch.repeat_interleave(torch.arange(old_seen.n_rows), old_seen.row_lengths())
    with torch.no_grad():
        labels = parent(old_u, old_seen.indices).cpu()
    data = {"user_idx": torch.cat([old_u, u]), "item_idx": torch.cat([old_seen.indices, i]),
            "rating": torch.cat([labels, r])}
    cfg = dataclasses.replace(model.train_config(), epochs=epochs, lr=lr or model.lr / 10, progress=False)
    Trainer(cfg).fit(model.module_, model._batch_loss, data)
    model.module_.eval()


# ---- other models ----------------------------------------------------------------------------
def _update_als(model: Any, old_seen: CSR, u: torch.Tensor, i: torch.Tensor, r: torch.Tensor | None,
                old_users: int, old_items: int, reg: float | None) -> None:
    """ALS solves: affected users over old (confidence 1) + new items, new items over their users."""
    lam = model.reg if reg is None else reg
    r = torch.ones(u.numel()) if r is None else r
    dim = model.item_factors_.shape[1]
    users = torch.cat([model.user_factors_.cpu(), torch.zeros(model.n_users - old_users, dim)])
    items = torch.cat([model.item_factors_.cpu(), torch.zeros(model.n_items - old_items, dim)])
    old_u = torch.repeat_interleave(torch.arange(old_seen.n_rows), old_seen.row_lengths())
    all_u, all_i = torch.cat([old_u, u]), torch.cat([old_seen.indices, i])
    all_r = torch.cat([torch.ones(old_u.numel()), r])
    affected = torch.unique(u)

    def als(other: torch.Tensor, idx: torch.Tensor, conf_r: torch.Tensor) -> torch.Tensor:
        mask = (idx >= 0).float()
        a = other[idx.clamp(min=0)] * mask[..., None]
        conf = model.alpha * conf_r * mask
        gram = other.T @ other + lam * torch.eye(dim) + torch.einsum("bl,bld,ble->bde", conf, a, a)
        return torch.linalg.solve(gram, torch.einsum("bl,bld->bd", (1.0 + conf) * mask, a))

    known = all_i < old_items
    users[affected] = als(items, *_padded(all_u[known], all_i[known], all_r[known], affected))
    new_items = torch.arange(old_items, model.n_items)
    if new_items.numel():
        items[new_items] = als(users, *_padded(i, u, r, new_items))
        users[affected] = als(items, *_padded(all_u, all_i, all_r, affected))
    model.user_factors_, model.item_factors_ = users.to(model.torch_device), items.to(model.torch_device)


def _update_bias(model: Any, old_seen: CSR, u: torch.Tensor, i: torch.Tensor, r: torch.Tensor,
                 old_users: int, old_items: int) -> None:
    """b <- (b_old (n_old + reg) + sum of new residuals) / (n_old + n_new + reg), items then users."""
    n_u_old = torch.cat([old_seen.row_lengths().float(), torch.zeros(model.n_users - old_users)])
    n_i_old = torch.zeros(model.n_items)
    n_i_old[:old_items] = torch.bincount(old_seen.indices, minlength=old_items).float()
    ub = torch.cat([model.user_bias_, torch.zeros(model.n_users - old_users)])
    ib = torch.cat([model.item_bias_, torch.zeros(model.n_items - old_items)])
    if model.use_items:
        resid = torch.bincount(i, r - model.mean_ - ub[u], model.n_items).float()
        ib = (ib * (n_i_old + model.reg_item) + resid) / (n_i_old + torch.bincount(i, minlength=model.n_items)
                                                          + model.reg_item)
    if model.use_users:
        resid = torch.bincount(u, r - model.mean_ - ib[i], model.n_users).float()
        ub = (ub * (n_u_old + model.reg_user) + resid) / (n_u_old + torch.bincount(u, minlength=model.n_users)
                                                          + model.reg_user)
    model.user_bias_, model.item_bias_ = ub.float(), ib.float()


def _update_item_item(model: Any, old_items: int) -> None:
    """New items get empty rows and columns of W (no links until a refit); scores use the merged seen sets."""
    extra = model.n_items - old_items
    if extra == 0:
        return
    if hasattr(model, "weights_"):  # EASE: dense W
        w = torch.zeros(model.n_items, model.n_items, device=model.weights_.device)
        w[:old_items, :old_items] = model.weights_
        model.weights_ = w
    else:  # ItemKNN: (n_items, k) neighbour lists, a new item's list points at itself with similarity 0
        k = model.neighbours_.shape[1]
        itself = torch.arange(old_items, model.n_items)[:, None].expand(-1, k)
        model.neighbours_ = torch.cat([model.neighbours_, itself])
        model.similarity_ = torch.cat([model.similarity_, torch.zeros(extra, k)])
        model._build_operator()
