"""Neural next-item models trained by the one `Trainer`: `sasrec` (causal self-attention) and `gru4rec`.

Training rows are windows of `max_len` targets cut from each user's sequence by tensor ops
(`Sequences.windows`); each position predicts the next item. Losses: "softmax" (full-catalogue
cross-entropy), "sampled" (softmax over the target and `n_neg` negatives shared by the batch,
accidental hits masked) and "gbce" (gSASRec's generalised binary cross-entropy with `n_neg`
negatives and calibration `gbce_t`), the last two for large catalogues. Item index 0 of the
networks is padding (model index + 1). Early stopping watches validation NDCG@10.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from recotorch.core.device import tensor_device
from recotorch.data.interactions import Interactions
from recotorch.data.sequences import tie_groups
from recotorch.errors import OptionError
from recotorch.models.base import register
from recotorch.models.gradient import GradientEstimator
from recotorch.models.sequential.base import SequenceModel
from recotorch.models.sequential.layers import CausalBlock, Dropout, full_softmax_loss, native_bf16
from recotorch.train.config import TrainConfig, Tune, int_range, param

Loss = Literal["softmax", "sampled", "gbce"]
Cell = Literal["gru", "lstm"]


@dataclass
class SequenceConfig(TrainConfig):
    """The fields both neural sequence models take (on top of the training loop's)."""

    max_len: int = param(50, ge=1, help="latest items of a history the network reads",
                         tune=int_range(10, 200, log=True))
    dropout: float = param(0.3, ge=0, lt=1, help="dropout on embeddings and layers", tune=Tune(0.0, 0.5))
    loss: Loss = param("softmax", help="softmax (full), sampled (n_neg negatives) or gbce")  # noqa: RUF009 (alias)
    n_neg: int = param(256, ge=1, help="sampled negatives (loss='sampled' or 'gbce')",
                       tune=int_range(16, 1024, log=True))
    gbce_t: float = param(0.75, ge=0, le=1, help="gBCE calibration t (loss='gbce')")
    mask_history: bool = param(False, help="leave the items already in the user's history before each position "
                                           "out of the loss's negatives, as the strict protocol leaves them out "
                                           "of the ranking (the target itself is never left out)")
    bf16_logits: bool = param(False, help="the full softmax's (targets x items) products in bfloat16 where the "
                                          "hardware multiplies bf16 natively (AVX512-BF16, AMX, CUDA); fp32 elsewhere")
    # chosen on the ml-100k validation target, where half the consecutive pairs are tied: SASRec NDCG@10 over
    # seeds 0-2 0.1283 -> 0.1381 (HR@10 0.2464 -> 0.2566), GRU4Rec seeds 0-1 0.1027 -> 0.1078 (0.1935 -> 0.2020)
    shuffle_ties: bool = param(True, help="each training batch puts a user's items with equal timestamps in a new "
                                          "random order (their file order is no signal; the stored histories "
                                          "keep it)")
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.01


class SASRecNet(nn.Module):
    """Item + position embeddings, pre-LN causal self-attention blocks, a final LayerNorm."""

    def __init__(self, n_items: int, dim: int, max_len: int, blocks: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.pos = nn.Embedding(max_len, dim)
        self.encoder = nn.Module()  # `encoder.layers.i.*`: the names nn.TransformerEncoder gave these weights
        self.encoder.layers = nn.ModuleList(CausalBlock(dim, heads, dropout) for _ in range(blocks))
        self.norm = nn.LayerNorm(dim)
        self.drop = Dropout(dropout)
        nn.init.normal_(self.item.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L) right-aligned, 0 = padding -> hidden states (B, L, dim)."""
        h = self.item(x) * math.sqrt(self.item.embedding_dim) + self.pos.weight[-x.shape[1]:]
        h = self.drop(h) * (x > 0).unsqueeze(-1)
        for block in self.encoder.layers:
            h = block(h)
        return self.norm(h)

    def item_weights(self) -> torch.Tensor:
        return self.item.weight[1:]


class GRU4RecNet(nn.Module):
    """Item embeddings through a GRU or LSTM; the output projected back onto the (tied) item embeddings."""

    def __init__(self, n_items: int, dim: int, hidden: int, layers: int, cell: str, dropout: float) -> None:
        super().__init__()
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=0)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(dim, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(hidden, dim)
        self.drop = Dropout(dropout)
        nn.init.normal_(self.item.weight, std=0.02)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.drop(self.item(x)))
        return self.out(self.drop(h))

    def item_weights(self) -> torch.Tensor:
        return self.item.weight[1:]


class _NeuralSequence(SequenceModel, GradientEstimator):
    """Shared training and scoring of the neural next-item models."""

    CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"fold_in", "similar_items", "item_vectors", "next_items"})
    loss: str = "softmax"
    n_neg: int = 256
    gbce_t: float = 0.75
    mask_history: bool = False
    bf16_logits: bool = False
    shuffle_ties: bool = True

    def _prepare(self, train: Interactions) -> None:
        if self.max_len < 1 or self.n_neg < 1:
            raise ValueError(f"max_len and n_neg must be >= 1, got {self.max_len} and {self.n_neg}")
        if self.patience is not None and getattr(self, "_no_valid", False):
            raise ValueError("patience needs validation rows (early stopping watches validation NDCG@10)")
        self._store_sequences(train)
        self._n_items = train.n_items
        self._flat_cache: torch.Tensor | None = None

    def fit(self, train: Interactions, valid: Interactions | None = None, **kwargs: Any) -> _NeuralSequence:
        self._no_valid = valid is None or len(valid) == 0
        return super().fit(train, valid, **kwargs)  # type: ignore[return-value]  # (SequenceModel.fit)

    def _training_tensors(self, train: Interactions) -> dict[str, torch.Tensor]:
        tensors = {"window": self.sequences_.windows(self.max_len)}
        if self.shuffle_ties:
            tensors["window_group"] = self.sequences_.windows(self.max_len, values=tie_groups(train))
        if self.mask_history:
            tensors["prefix_start"], tensors["prefix_count"] = self.sequences_.window_prefixes(self.max_len)
        return tensors

    def _first_seen(self, batch: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """(B, n_items + 1) the input position where each item first occurs in a window's history (-1: before
        the window, L: never); column 0 is padding. Built by scatter, no loop over windows; int16 while the
        positions fit (it is read once per target)."""
        rows, length = inputs.shape
        dtype = torch.int16 if length < 2**15 else torch.int64
        first = torch.full((rows, self._n_items + 1), length, dtype=dtype, device=inputs.device)
        first.scatter_reduce_(1, inputs, torch.arange(length, dtype=dtype, device=inputs.device).expand(rows, length),
                              "amin")
        count = batch["prefix_count"]
        owner = torch.repeat_interleave(torch.arange(rows, device=inputs.device), count)
        offset = torch.arange(owner.numel(), device=inputs.device) - (torch.cumsum(count, 0) - count)[owner]
        flat = self._flat_items(inputs.device)
        first[owner, flat[batch["prefix_start"][owner] + offset] + 1] = -1
        return first

    def _seen_index(self, batch: dict[str, torch.Tensor], inputs: torch.Tensor, row: torch.Tensor,
                    step: torch.Tensor) -> torch.Tensor:
        """Flat indices `n * n_items + i` of the pairs (target n, item i in its history): the items before
        its window and the window's inputs up to its step (repeats may occur). A target's history is ~6% of
        the catalogue on ml-100k, so these pairs cost fewer passes than an (N, n_items) mask."""
        rows, length = inputs.shape
        n_items, device = self._n_items, inputs.device
        target_of = torch.full((rows, length), -1, dtype=torch.int64, device=device)
        target_of[row, step] = torch.arange(row.numel(), device=device)
        earlier = torch.ones(length, length, dtype=torch.bool, device=device).tril_()  # [s, t]: t <= s
        r, s, t = (earlier & (target_of[:, :, None] >= 0) & (inputs[:, None, :] > 0)).nonzero(as_tuple=True)
        in_window = target_of[r, s] * n_items + inputs[r, t] - 1
        count = batch["prefix_count"][row]  # the items before each target's window
        owner = torch.repeat_interleave(torch.arange(row.numel(), device=device), count)
        offset = torch.arange(owner.numel(), device=device) - (torch.cumsum(count, 0) - count)[owner]
        before = self._flat_items(device)[batch["prefix_start"][row][owner] + offset]
        return torch.cat([in_window, owner * n_items + before])

    def _flat_items(self, device: torch.device) -> torch.Tensor:
        """The training sequences' flat item tensor on `device` (cached for the fit)."""
        cached = getattr(self, "_flat_cache", None)
        if cached is None or cached.device != device:
            cached = self._flat_cache = self.sequences_.items.to(device)
        return cached

    def _batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch["window"] + 1  # 0 = padding
        if "window_group" in batch:
            x = _shuffle_within_groups(x, batch["window_group"])
        inputs, targets = x[:, :-1], x[:, 1:]
        h = self.module_(inputs)
        row, step = (targets > 0).nonzero(as_tuple=True)  # the targets, row-major as h[mask]
        hidden, target = h[row, step], targets[row, step] - 1  # (N, dim), (N,)
        weights = self.module_.item_weights()
        if self.loss == "softmax":
            seen = self._seen_index(batch, inputs, row, step) if self.mask_history else None
            bf16 = self.bf16_logits and native_bf16(hidden.device)
            return full_softmax_loss(hidden, weights, target, seen, torch.bfloat16 if bf16 else None)
        first = self._first_seen(batch, inputs) if self.mask_history else None
        negatives = torch.randint(self._n_items, (self.n_neg,), device=hidden.device)
        pos = (hidden * weights[target]).sum(1, keepdim=True)  # (N, 1)
        neg = hidden @ weights[negatives].T  # (N, n_neg)
        drop = negatives[None, :] == target[:, None]  # accidental hits
        if first is not None:
            drop |= first[:, negatives + 1][row] <= step[:, None].to(first.dtype)
        neg = neg.masked_fill(drop, -torch.inf)
        if self.loss == "sampled":
            return F.cross_entropy(torch.cat([pos, neg], 1), torch.zeros_like(target))
        alpha = self.n_neg / max(self._n_items - 1, 1)  # gSASRec: beta calibrates the positive term
        beta = alpha * (self.gbce_t * (1 - 1 / alpha) + 1 / alpha)
        neg_term = F.logsigmoid(-neg).masked_fill(torch.isinf(neg), 0.0).sum(1)
        return -(beta * F.logsigmoid(pos[:, 0]) + neg_term).mean()

    def _valid_loss(self, valid: Interactions) -> float:
        return -self._valid_ndcg(valid)

    def _represent(self, history: torch.Tensor) -> torch.Tensor:
        x = (history + 1).to(self.module_device)  # -1 padding -> 0
        if x.shape[1] == 0:
            x = torch.zeros(x.shape[0], 1, dtype=torch.int64, device=x.device)
        return self.module_(x)[:, -1]

    def _score_represented(self, rep: torch.Tensor) -> torch.Tensor:
        return rep.to(self.module_device) @ self.module_.item_weights().T

    def item_vectors(self) -> torch.Tensor | None:
        return self.module_.item_weights().detach().cpu()

    def _fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, extra = GradientEstimator._fitted_state(self)
        return {**tensors, **self._sequence_state()}, extra

    def _restore(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        self._n_items = extra["n_items"]
        self._restore_sequences(tensors, extra["n_items"])
        GradientEstimator._restore(self, tensors, extra)
        self.module_.to(tensor_device(self.device)).eval()


def _shuffle_within_groups(x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """`x` (B, L) with each row's entries of equal `group` (non-decreasing along the row) in a random order.

    Sorting by group + a uniform draw in [0, 1) keeps the groups in place and shuffles each one."""
    key = group.to(torch.float64) + torch.rand(group.shape, dtype=torch.float64, device=group.device)
    return x.gather(1, key.argsort(1))


@register
class SASRec(_NeuralSequence):
    """SASRec: causal self-attention over the last `max_len` items predicts the next one.

    Defaults (lr 3e-2, dropout 0.4, 30 epochs, the history mask, shuffled ties) were chosen on the validation
    target (second-to-last item) of ml-100k leave-one-out: test NDCG@10 0.1321, HR@10 0.2362 through the CLI
    (0.1291 / 0.2301 with the benchmark's item order); see docs/sequences.md.

    >>> SASRec(epochs=30).fit(train).recommend_history([50, 172, 133], k=10)
    """

    name = "sasrec"
    TEST_PARAMS: ClassVar[dict[str, Any]] = {"dim": 8, "max_len": 6, "blocks": 1, "heads": 1, "epochs": 2,
                                             "batch_size": 16}

    @dataclass
    class Config(SequenceConfig):
        # tuned among even widths: the attention heads split dim, so an odd width would be refused
        dim: int = param(64, ge=1, help="item embedding width", tune=(16, 32, 48, 64, 96, 128, 192, 256))
        blocks: int = param(2, ge=1, help="transformer blocks", tune=int_range(1, 4))
        heads: int = param(2, ge=1, help="attention heads (dim must be a multiple)")
        epochs: int = 30
        # chosen on the ml-100k validation target (benchmarks/results/sasrec_tuning_2026-12-02.md): NDCG@10
        # 0.1371 (0.1334 with seed 1) against 0.1220 at lr 3e-3 / dropout 0.3; the mask: 0.1268 against 0.1132
        lr: float = 3e-2
        dropout: float = param(0.4, ge=0, lt=1, help="dropout on embeddings and layers", tune=Tune(0.0, 0.5))
        mask_history: bool = True

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.dim % self.heads:
                raise OptionError("heads", f"dim ({self.dim}) must be a multiple of heads ({self.heads})")

    def _build_module(self, n_users: int, n_items: int) -> nn.Module:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        return SASRecNet(n_items, self.dim, self.max_len, self.blocks, self.heads, self.dropout)


@register
class GRU4Rec(_NeuralSequence):
    """GRU4Rec: a recurrent network (cell="gru" or "lstm", as in the course) over the last `max_len`
    items, trained on next-item prediction.

    Defaults (20 epochs, lr 3e-2, the history mask, shuffled ties) chosen on the ml-100k validation target:
    NDCG@10 0.149 there; see docs/sequences.md.

    >>> GRU4Rec(cell="lstm").fit(train).recommend([196], k=10)
    """

    name = "gru4rec"
    TEST_PARAMS: ClassVar[dict[str, Any]] = {"dim": 8, "hidden": 8, "max_len": 6, "epochs": 2, "batch_size": 16}

    @dataclass
    class Config(SequenceConfig):
        cell: Cell = param("gru", help="gru or lstm")  # noqa: RUF009 (a type alias)
        dim: int = param(64, ge=1, help="item embedding width", tune=int_range(16, 256, log=True))
        hidden: int = param(128, ge=1, help="recurrent state width", tune=int_range(16, 512, log=True))
        layers: int = param(1, ge=1, help="recurrent layers")
        epochs: int = 20
        # chosen on the ml-100k validation target (benchmarks/results/sasrec_tuning_2026-12-02.md): NDCG@10 over
        # seeds 0-2 0.1493 (HR@10 0.2747) against 0.1068 (0.2015) at lr 3e-3 without the mask; either alone ~0.10-0.11
        lr: float = 3e-2
        mask_history: bool = True

    def _build_module(self, n_users: int, n_items: int) -> nn.Module:
        return GRU4RecNet(n_items, self.dim, self.hidden, self.layers, self.cell, self.dropout)
