"""EASE within memory: the in-place inverse, float32 against float64, and the refusal of a catalogue too big."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from recotorch.data.interactions import Interactions
from recotorch.errors import UnsupportedError
from recotorch.models import ease
from recotorch.models.ease import EASE

pytestmark = pytest.mark.usefixtures("one_thread")


def _spd(n: int, dtype: torch.dtype) -> torch.Tensor:
    x = (torch.rand(3 * n, n, generator=torch.Generator().manual_seed(n)) < 0.2).to(dtype)
    g = x.T @ x
    g.diagonal().add_(5.0)
    return g


@pytest.mark.parametrize("lapack", [True, False], ids=["scipy-lapack", "torch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spd_inverse_is_the_inverse_and_reuses_the_matrix(dtype, lapack):
    g = _spd(70, dtype)
    expected = torch.linalg.inv(g.double())
    buffer = g.clone()
    inv = ease.spd_inverse_(buffer, lapack=lapack)
    torch.testing.assert_close(inv.double(), expected, rtol=1e-4, atol=1e-6)
    assert torch.equal(inv, inv.T)
    assert inv.data_ptr() == buffer.data_ptr()  # the result lives in the input's memory


def test_mirror_over_several_blocks():
    a = torch.randn(50, 50).triu()
    ease._mirror_upper_(a, block=16)
    assert torch.equal(a, a.T) and torch.equal(a.triu(), a.triu())


def _data(n_users: int = 120, n_items: int = 60) -> Interactions:
    gen = torch.Generator().manual_seed(0)
    taste = torch.randn(n_users, 4, generator=gen) @ torch.randn(4, n_items, generator=gen)
    users, items = (taste > 1.0).nonzero(as_tuple=True)
    return Interactions.from_frame(pl.DataFrame({"user": users.numpy(), "item": items.numpy()}))


@pytest.mark.parametrize("shape", [(120, 60), (40, 90)], ids=["more-users:cholesky", "more-items:woodbury"])
def test_float32_weights_match_float64_and_the_closed_form(shape):
    data = _data(*shape)
    assert (data.n_users < data.n_items) == (shape[0] < shape[1])
    single, double = EASE(reg=5.0).fit(data), EASE(reg=5.0, dtype="float64").fit(data)
    assert single.weights_.dtype == torch.float32
    assert single.weights_.diagonal().abs().max() == 0
    torch.testing.assert_close(single.weights_, double.weights_, rtol=1e-3, atol=1e-5)
    # B = I - P / diag(P), from the explicitly inverted Gram matrix
    x = torch.zeros(data.n_users, data.n_items, dtype=torch.float64)
    x[data.user_idx, data.item_idx] = 1.0
    p = torch.linalg.inv(x.T @ x + 5.0 * torch.eye(data.n_items, dtype=torch.float64))
    b = -p / p.diagonal()[None, :]
    b.diagonal().zero_()
    torch.testing.assert_close(double.weights_, b.float(), rtol=1e-4, atol=1e-6)


def test_a_catalogue_that_does_not_fit_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(ease, "available_bytes", lambda device: 10**6)
    with pytest.raises(UnsupportedError) as err:
        EASE(reg=5.0).fit(_data())
    message = str(err.value)
    assert "60 items" in message and "GB" in message and "als" in message and "\n" not in message


def test_the_estimate_counts_the_dense_matrix():
    pytest.importorskip("scipy")
    free = 40_000**2 * 4  # exactly the weights, without the fitting blocks
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ease, "available_bytes", lambda device: free)
        with pytest.raises(UnsupportedError, match=r"40,000 items needs about 6\.7 GB \(1 x 40,000\^2 float32"):
            ease.check_memory(40_000, torch.float32, torch.device("cpu"))
        ease.check_memory(20_000, torch.float32, torch.device("cpu"))  # 1.6 GB fits
