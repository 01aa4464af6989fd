"""Building blocks of the neural next-item models, written for a cheap training step on the CPU.

- `Dropout`: the keep-mask compares 16-bit random lanes (four cut from each 64-bit draw) with a threshold:
  about 2.5x cheaper than a float `rand >= p` and 6x cheaper than torch's Bernoulli sampling on the CPU;
- `CausalBlock`: one pre-LN causal self-attention block with the parameter names of
  `nn.TransformerEncoderLayer(norm_first=True)`, so model directories written before it still load;
- `full_softmax_loss`: cross-entropy over the whole catalogue from hidden states and item weights, with
  the history mask applied in place and the backward pass computed from one saved (N, n_items) buffer,
  optionally in bf16 where the hardware has bf16 products (`native_bf16`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 1 << 16  # the drop probability is rounded to a multiple of 1 / 65536 (0.4 -> 0.399994)


class Dropout(nn.Module):
    """Inverted dropout (as `nn.Dropout`): each entry kept with probability ~1 - p, scaled by 1 / (1 - p)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep, scale = keep_mask(x, self.p)
        return x * keep.to(x.dtype).mul_(scale)  # the scaled mask first: ~25% cheaper than (x * keep) * scale


def keep_mask(x: torch.Tensor, p: float) -> tuple[torch.Tensor, float]:
    """A bool mask shaped as `x`, each entry True with probability 1 - p (p rounded to 1 / 65536), and
    the matching scale. Each 64-bit draw gives four uniform 16-bit lanes: a quarter of the generator
    calls of `torch.rand_like` and no float conversion."""
    dropped = min(round(p * _LEVELS), _LEVELS - 1)
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)  # all 64 bits
    lanes = bits.view(torch.int16)[:n].view(x.shape)
    return lanes >= dropped - _LEVELS // 2, _LEVELS / (_LEVELS - dropped)


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
    """Mean cross-entropy of `hidden @ weights.T` against `target`, entries of `seen` left out (-inf).

    One buffer: the logits become the softmax in the forward pass (saved; -log of the target's entry is
    the loss) and the gradient `softmax - onehot` in the backward pass; the 1 / N scale is applied to the
    two small products, not to the (N, n_items) buffer."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weights: torch.Tensor, target: torch.Tensor,
                seen: torch.Tensor | None, dtype: torch.dtype | None) -> torch.Tensor:
        ctx.dtypes = hidden.dtype, weights.dtype
        if dtype is not None:
            hidden, weights = hidden.to(dtype), weights.to(dtype)
        logits = hidden @ weights.T
        rows = torch.arange(target.numel(), device=target.device)
        if seen is not None:
            _leave_out(logits, seen, rows, target)
        prob = torch.softmax(logits, 1)
        # the floor only caps the reported loss where the target's probability underflows (a gap > 87 nats)
        picked = prob[rows, target].to(torch.promote_types(prob.dtype, torch.float32))
        loss = -picked.clamp_min(torch.finfo(picked.dtype).tiny).log().mean()
        ctx.save_for_backward(hidden, weights, target, prob)
        return loss

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        hidden, weights, target, g = ctx.saved_tensors
        g[torch.arange(target.numel(), device=g.device), target] -= 1.0  # in place: a second backward is not supported
        scale = grad / target.numel()
        # in bf16 (or under autocast) the buffer may be bf16: each gradient in its input's dtype
        hidden_dtype, weights_dtype = ctx.dtypes
        grad_hidden = ((g @ weights.to(g.dtype)) * scale).to(hidden_dtype) if ctx.needs_input_grad[0] else None
        grad_weights = ((g.T @ hidden.to(g.dtype)) * scale).to(weights_dtype) if ctx.needs_input_grad[1] else None
        return grad_hidden, grad_weights, None, None, None


def _leave_out(logits: torch.Tensor, seen: torch.Tensor, rows: torch.Tensor, target: torch.Tensor) -> None:
    """Set the `seen` entries of logits (N, n_items) to -inf in place, each row's target entry kept."""
    own = logits[rows, target]
    if seen.dtype == torch.bool:  # torch.where is vectorised, masked_fill_ a scalar loop on the CPU
        torch.where(seen, torch.tensor(-torch.inf, dtype=logits.dtype, device=logits.device), logits, out=logits)
    else:
        logits.view(-1).index_fill_(0, seen, -torch.inf)
    logits[rows, target] = own


def full_softmax_loss(hidden: torch.Tensor, weights: torch.Tensor, target: torch.Tensor,
                      seen: torch.Tensor | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Cross-entropy of hidden (N, D) against all items weights (n_items, D) for target (N,), the negatives
    in `seen` left out: an (N, n_items) bool mask or the flat indices `n * n_items + i` of the entries
    (repeats allowed); a row's own target is never left out. Gradients as
    `F.cross_entropy(logits.masked_fill(seen, -inf), target)`, with fewer passes over the logits. With
    `dtype` (torch.bfloat16) the two inputs are cast to it and the logits, softmax and products are in it
    (the softmax accumulates in fp32); the gradients come back in the inputs' dtypes."""
    return _FullSoftmax.apply(hidden, weights, target, seen, dtype)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 matrices in hardware: CUDA with bf16 support, or a CPU with
    AVX512-BF16 or AMX (elsewhere bf16 products are emulated and slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    cpu = torch.cpu
    return any(getattr(cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
