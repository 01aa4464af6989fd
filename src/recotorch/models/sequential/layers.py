"""Building blocks of the neural next-item models, written for a cheap training step on the CPU.

- `Dropout`: the mask drawn as `rand >= p` (about 3x cheaper than torch's Bernoulli sampling on the CPU);
- `CausalBlock`: one pre-LN causal self-attention block with the parameter names of
  `nn.TransformerEncoderLayer(norm_first=True)`, so model directories written before it still load;
- `full_softmax_loss`: cross-entropy over the whole catalogue from hidden states and item weights, with
  the history mask applied in place and the backward pass computed from one saved (N, n_items) buffer.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class Dropout(nn.Module):
    """Inverted dropout (as `nn.Dropout`); the keep-mask is `rand >= p`, scaled by 1 / (1 - p)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand_like(x) >= self.p
        return x * keep * (1.0 / (1.0 - self.p))


class CausalBlock(nn.Module):
    """x + drop(attn(LN(x))), then x + drop(W2 drop(gelu(W1 LN(x)))); causal attention over positions."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)  # holds in_proj / out_proj
        self.linear1 = nn.Linear(dim, dim)
        self.linear2 = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.heads = heads
        self.p = dropout
        self.drop = Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        rows, length, dim = h.shape
        attn = self.self_attn
        qkv = F.linear(self.norm1(h), attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = qkv.view(rows, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        if self.training and self.p > 0:  # the attention weights' dropout drawn as `Dropout` draws it
            scores = (q @ k.transpose(-1, -2)).mul_(q.shape[-1] ** -0.5)
            scores.masked_fill_(_causal(length, h.device), -torch.inf)
            a = self.drop(torch.softmax(scores, -1)) @ v
        else:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + self.drop(attn.out_proj(a.transpose(1, 2).reshape(rows, length, dim)))
        return h + self.drop(self.linear2(self.drop(F.gelu(self.linear1(self.norm2(h))))))


_CAUSAL: dict[tuple[int, str], torch.Tensor] = {}


def _causal(length: int, device: torch.device) -> torch.Tensor:
    """(length, length) bool, True above the diagonal (a position may not read later ones); cached."""
    key = (length, str(device))
    if key not in _CAUSAL:
        _CAUSAL[key] = torch.ones(length, length, dtype=torch.bool, device=device).triu_(1)
    return _CAUSAL[key]


class _FullSoftmax(torch.autograd.Function):
    """Mean cross-entropy of `hidden @ weights.T` against `target`, entries of `seen` left out (-inf)."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weights: torch.Tensor, target: torch.Tensor,
                seen: torch.Tensor | None) -> torch.Tensor:
        logits = hidden @ weights.T
        if seen is not None:
            logits.masked_fill_(seen, -torch.inf)
        logp = torch.log_softmax(logits, 1)
        rows = torch.arange(target.numel(), device=target.device)
        loss = -logp[rows, target].mean()
        ctx.save_for_backward(hidden, weights, target, logp)
        return loss

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        hidden, weights, target, logp = ctx.saved_tensors
        g = logp.exp_()  # softmax; its buffer is not needed again (a second backward is not supported)
        g[torch.arange(target.numel(), device=g.device), target] -= 1.0
        g.mul_(grad / target.numel())
        # under autocast hidden or the logits may be bf16: each gradient in its input's dtype
        grad_hidden = (g @ weights.to(g.dtype)).to(hidden.dtype) if ctx.needs_input_grad[0] else None
        grad_weights = (g.T @ hidden.to(g.dtype)).to(weights.dtype) if ctx.needs_input_grad[1] else None
        return grad_hidden, grad_weights, None, None


def full_softmax_loss(hidden: torch.Tensor, weights: torch.Tensor, target: torch.Tensor,
                      seen: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of hidden (N, D) against all items weights (n_items, D) for target (N,); `seen`
    (N, n_items) bool marks negatives left out (never set a row's own target). Gradients as
    `F.cross_entropy(logits.masked_fill(seen, -inf), target)`, with fewer passes over the logits."""
    return _FullSoftmax.apply(hidden, weights, target, seen)
