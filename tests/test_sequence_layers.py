"""The sequence models' own layers: the fused full-softmax loss, the fast dropout, the causal block."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recotorch.models.sequential.layers import CausalBlock, Dropout, full_softmax_loss, keep_mask

pytestmark = pytest.mark.usefixtures("one_thread")


def _softmax_problem(seed: int, rows: int, items: int, dim: int, dtype: torch.dtype = torch.float64):
    """(hidden (rows, dim), item weights (items, dim), targets (rows,), generator), seeded; both need grad."""
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, dim, generator=gen, dtype=dtype, requires_grad=True)
    weights = torch.randn(items, dim, generator=gen, dtype=dtype, requires_grad=True)
    return hidden, weights, torch.randint(items, (rows,), generator=gen), gen


def test_full_softmax_loss_matches_masked_cross_entropy_and_its_gradients():
    hidden, weights, target, gen = _softmax_problem(0, 40, 30, 6)
    seen = torch.rand(40, 30, generator=gen) < 0.4
    seen[torch.arange(40), target] = False
    for mask in (None, seen):
        logits = hidden @ weights.T
        if mask is not None:
            logits = logits.masked_fill(mask, -torch.inf)
        want = F.cross_entropy(logits, target)
        want_grads = torch.autograd.grad(want * 3.0, (hidden, weights))
        got = full_softmax_loss(hidden, weights, target, mask)
        got_grads = torch.autograd.grad(got * 3.0, (hidden, weights))
        torch.testing.assert_close(got, want)
        for g, w in zip(got_grads, want_grads, strict=True):
            torch.testing.assert_close(g, w)
    assert full_softmax_loss(hidden, weights, target, seen) < full_softmax_loss(hidden, weights, target)


def test_dropout_keeps_the_mean_in_training_and_is_the_identity_in_eval():
    drop = Dropout(0.25)
    x = torch.ones(200_000)
    torch.manual_seed(0)
    y = drop(x)
    assert abs(float((y == 0).float().mean()) - 0.25) < 0.01
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.75))
    assert abs(float(y.mean()) - 1.0) < 0.01
    assert drop.eval()(x) is x


def test_causal_block_is_a_pre_ln_transformer_layer_that_reads_no_later_position():
    torch.manual_seed(0)
    block = CausalBlock(8, 2, 0.1)
    reference = nn.TransformerEncoderLayer(8, 2, 8, 0.1, batch_first=True, norm_first=True, activation="gelu")
    assert set(block.state_dict()) == set(reference.state_dict())  # model directories of the old layer load
    block.load_state_dict(reference.state_dict())
    block.eval(), reference.eval()
    x = torch.randn(3, 7, 8)
    causal = nn.Transformer.generate_square_subsequent_mask(7)
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference(x, src_mask=causal, is_causal=True))
        changed = x.clone()
        changed[:, 4:] += 1.0
        torch.testing.assert_close(block(changed)[:, :4], block(x)[:, :4])
    block.train()  # the training path (attention dropout drawn by hand) is causal too
    torch.manual_seed(1)
    out = block(x)
    torch.manual_seed(1)
    torch.testing.assert_close(block(changed)[:, :4], out[:, :4])


def test_full_softmax_loss_takes_flat_indices_and_keeps_the_target():
    hidden, weights, target, gen = _softmax_problem(2, 20, 12, 5)
    mask = torch.rand(20, 12, generator=gen) < 0.3
    mask[:, 0] = True  # the target's own entry among them for some rows: it is kept
    flat = torch.cat([mask.view(-1).nonzero()[:, 0]] * 2)  # repeats allowed
    kept = mask.clone()
    kept[torch.arange(20), target] = False
    want = full_softmax_loss(hidden, weights, target, kept)
    got = full_softmax_loss(hidden, weights, target, flat)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got, hidden), torch.autograd.grad(want, hidden))


def test_dropout_draws_about_p_with_any_shape():
    torch.manual_seed(3)
    for shape in ((7,), (3, 5, 11), (0, 4)):
        keep, scale = keep_mask(torch.empty(shape), 0.4)
        assert keep.shape == shape and keep.dtype == torch.bool and scale == pytest.approx(1 / 0.6, rel=1e-4)
    keep, _ = keep_mask(torch.empty(400_000), 0.4)
    assert abs(float(keep.float().mean()) - 0.6) < 0.005


def test_bf16_softmax_loss_is_close_and_returns_input_dtypes():
    hidden, weights, target, _ = _softmax_problem(4, 64, 50, 16, torch.float32)
    want = full_softmax_loss(hidden, weights, target)
    got = full_softmax_loss(hidden, weights, target, dtype=torch.bfloat16)
    assert got.dtype == torch.float32 and abs(float((got - want).detach())) < 0.05
    grads = torch.autograd.grad(got, (hidden, weights))
    assert [g.dtype for g in grads] == [torch.float32, torch.float32]
    for g, w in zip(grads, torch.autograd.grad(want, (hidden, weights)), strict=True):
        assert float((g - w).norm() / w.norm()) < 0.05
