"""Incremental update of `MatrixFactorization` (and `ColdStartMF`): closed-form solves, then an optional fine-tune.

New users are folded in; new items get [q_i, b_i] by the same ridge solve against the (frozen)
user factors; known users with new ratings are re-solved with their old vector as the prior,
weighted by the Gram matrix of their old items (recursive least squares: the old ratings are not
stored, their information is). Known items stay frozen. `epochs > 0` then fine-tunes all tables on
the new rows plus a replay of the old pairs labelled with the parent model's own predictions
(distillation), so old users are not forgotten. All solves run in the model's logit space.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from recotorch.core.maths import logit_targets, pad_rows, ridge_solve
from recotorch.data.interactions import CSR
from recotorch.models.base import NewRows

DEFAULT_REG = 0.1  # prior strength of the closed-form solves, in units of the fitted factors' variance

__all__ = ["DEFAULT_REG", "update_factors"]


def update_factors(model: Any, rows: NewRows, *, reg: float | None, epochs: int, lr: float | None) -> None:
    """Update a `MatrixFactorization` in place with `rows` (see the module docstring)."""
    r = rows.ratings(model)
    parent = _snapshot(model, rows.old_users, rows.old_items) if epochs > 0 else None
    _solve(model, rows.old_seen, rows.user_idx, rows.item_idx, r, rows.old_users, rows.old_items, reg)
    if parent is not None:
        _fine_tune(model, rows.user_idx, rows.item_idx, r, rows.old_seen, parent, epochs, lr)


def _tables(m: Any) -> list[torch.Tensor]:
    return [m.user_factors.weight, m.user_bias.weight, m.item_factors.weight, m.item_bias.weight]


def _ridge(design: torch.Tensor, idx: torch.Tensor, z: torch.Tensor, precision: torch.Tensor,
           mean: torch.Tensor) -> torch.Tensor:
    mask = (idx >= 0).float()
    return ridge_solve(design[idx.clamp(min=0)] * mask[..., None], z * mask, precision, mean)


def _solve(model: Any, old_seen: CSR, u: torch.Tensor, i: torch.Tensor, r: torch.Tensor,
           old_users: int, old_items: int, reg: float | None) -> None:
    """Closed-form solves in the model's logit space: new users, then new items, then all affected users."""
    pu, bu, qi, bi = (t.detach().cpu() for t in _tables(model.module_))
    x_users, x_items = torch.cat([pu, bu], 1), torch.cat([qi, bi], 1)  # (n, d+1): [vector, bias]
    lam = DEFAULT_REG if reg is None else reg
    prior_u = torch.diag(lam / x_users.var(0).clamp(min=1e-6))
    prior_i = torch.diag(lam / x_items.var(0).clamp(min=1e-6))
    z = logit_targets(r, model.rating_range_)
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
        seen_rows = torch.sparse_coo_tensor(torch.stack([old_u, old_seen.indices]), torch.ones(old_u.numel()),
                                            (old_seen.n_rows, old_items)).index_select(0, old_aff)
        precision[pos] += torch.sparse.mm(seen_rows, outer).view(-1, d1, d1)
        mean[pos] = x_users[old_aff]

    def solve_users(row_mask: torch.Tensor) -> None:
        idx, zz = pad_rows(u[row_mask], i[row_mask], z[row_mask], affected)
        target = zz - items[idx.clamp(min=0), -1]  # logit minus the item bias
        design = torch.cat([items[:, :-1], torch.ones(items.shape[0], 1)], 1)
        users[affected] = _ridge(design, idx, target, precision, mean)

    solve_users(i < old_items)  # 1. users against the known (frozen) items
    new_items = torch.arange(old_items, model.n_items)
    if new_items.numel():  # 2. new items against the (now extended) user side
        idx, zz = pad_rows(i, u, z, new_items)
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
