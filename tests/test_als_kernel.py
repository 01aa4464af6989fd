"""ALS's CG solves: the compiled (Numba) and tensor paths agree, converge to the exact solve, and the
confidence scale makes the weights' units irrelevant."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest
import torch

import recotorch as rt
from recotorch.artifacts import save
from recotorch.core.maths import als_solve, pad_rows
from recotorch.data.interactions import Interactions, build_csr
from recotorch.errors import OptionError
from recotorch.models.als import ImplicitALS
from recotorch.train import als_kernel

pytestmark = pytest.mark.usefixtures("one_thread")


def _problem(n_rows: int = 40, n_other: int = 30, d: int = 6, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(n_rows, n_other, generator=gen) < 0.2
    rows, cols = mask.nonzero(as_tuple=True)
    conf = torch.rand(rows.numel(), generator=gen) * 5.0
    csr = build_csr(rows, cols, n_rows, conf)
    other = torch.randn(n_other, d, generator=gen) * 0.3
    current = torch.randn(n_rows, d, generator=gen) * 0.1
    return csr, rows, cols, conf, other, current


def _play_counts(scale: float = 1.0, seed: int = 0) -> Interactions:
    gen = torch.Generator().manual_seed(seed)
    taste = torch.randn(60, 3, generator=gen) @ torch.randn(3, 40, generator=gen)
    users, items = (taste > 0.8).nonzero(as_tuple=True)
    counts = torch.randint(1, 50, (users.numel(),), generator=gen).float() * scale
    frame = pl.DataFrame({"user": users.numpy(), "item": items.numpy(), "rating": counts.numpy()})
    return Interactions.from_frame(frame)


def test_numba_and_torch_paths_agree():
    pytest.importorskip("numba")
    csr, _, _, _, other, current = _problem()
    args = (csr.indptr, csr.indices, csr.values, other, current, 2.0, 3)
    compiled, tensors = als_kernel.numba_cg(*args), als_kernel.torch_cg(*args)
    assert not torch.equal(compiled, current)  # the solve moved the factors
    torch.testing.assert_close(compiled, tensors, rtol=1e-4, atol=1e-5)


def test_cg_with_dim_steps_reaches_the_exact_als_solve():
    csr, rows, cols, conf, other, _ = _problem(d=5)
    exact = als_solve(other, *pad_rows(rows, cols, conf, torch.arange(csr.n_rows)), 1.0, 2.0)
    start = torch.zeros(csr.n_rows, 5)
    for solve in (als_kernel.numba_cg, als_kernel.torch_cg):
        if solve is als_kernel.numba_cg and not als_kernel.supports(start):
            continue
        x = solve(csr.indptr, csr.indices, csr.values, other, start, 2.0, 12)
        torch.testing.assert_close(x, exact, rtol=1e-3, atol=1e-4)


def test_model_factors_match_with_and_without_the_compiled_kernel(monkeypatch):
    pytest.importorskip("numba")
    data = _play_counts()
    fast = ImplicitALS(dim=6, iterations=3, reg=1.0).fit(data)
    monkeypatch.setattr(als_kernel, "supports", lambda *t: False)
    slow = ImplicitALS(dim=6, iterations=3, reg=1.0).fit(data)
    torch.testing.assert_close(fast.item_factors_, slow.item_factors_, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(fast.user_factors_, slow.user_factors_, rtol=1e-3, atol=1e-4)


def test_weights_in_any_units_give_the_same_factors():
    counts, scaled = _play_counts(1.0), _play_counts(1000.0)
    a = ImplicitALS(dim=6, iterations=3, reg=1.0).fit(counts)
    b = ImplicitALS(dim=6, iterations=3, reg=1.0).fit(scaled)
    assert b.weight_scale_ == pytest.approx(1000.0 * a.weight_scale_)
    torch.testing.assert_close(a.item_factors_, b.item_factors_, rtol=1e-3, atol=1e-5)
    raw = ImplicitALS(dim=6, iterations=3, reg=1.0, weight_scale="none").fit(scaled)
    assert raw.weight_scale_ == 1.0 and not torch.allclose(raw.item_factors_, a.item_factors_, atol=1e-3)
    # a new user's fold-in reads its values in the training units
    hist = torch.tensor([[0, 3, 5]])
    torch.testing.assert_close(a.fold_in(hist, torch.tensor([[2.0, 4.0, 1.0]])),
                               b.fold_in(hist, torch.tensor([[2000.0, 4000.0, 1000.0]])), rtol=1e-3, atol=1e-5)


def test_binary_data_is_unchanged_by_the_scale():
    data = _play_counts()
    binary = Interactions(data.user_idx, data.item_idx, data.users, data.items)
    a = ImplicitALS(dim=6, iterations=2).fit(binary)
    b = ImplicitALS(dim=6, iterations=2, weight_scale="none").fit(binary)
    assert a.weight_scale_ == 1.0
    torch.testing.assert_close(a.item_factors_, b.item_factors_)


def test_negative_weights_are_refused():
    data = _play_counts()
    negative = Interactions(data.user_idx, data.item_idx, data.users, data.items, rating=-data.rating)
    with pytest.raises(OptionError, match="weights >= 0"):
        ImplicitALS(dim=4, iterations=1).fit(negative)


def test_the_scale_is_saved_with_the_model(tmp_path):
    model = ImplicitALS(dim=6, iterations=2, reg=1.0).fit(_play_counts(1000.0))
    save(model, tmp_path / "als")
    loaded = rt.load(tmp_path / "als")
    assert loaded.weight_scale_ == pytest.approx(model.weight_scale_) and model.weight_scale_ > 1000
    hist, values = torch.tensor([[0, 3, 5]]), torch.tensor([[2000.0, 4000.0, 1000.0]])
    torch.testing.assert_close(loaded.fold_in(hist, values), model.fold_in(hist, values))


def test_prepare_fit_starts_loading_the_kernels_making_the_model_does_not():
    pytest.importorskip("numba")
    code = ("import recotorch.train.als_kernel as k\nfrom recotorch.models.als import ImplicitALS\n"
            "model = ImplicitALS(dim=4)\nassert not k._KERNELS.started\nmodel.prepare_fit()\n"
            "assert k._KERNELS.started\nfirst = k._kernels()\n"  # waits for that thread rather than loading twice
            "assert k._KERNELS.done and k._kernels() is first\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
