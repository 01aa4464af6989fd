"""Training hyper-parameters shared by every model trained by gradient descent."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from recotorch.train.ordering import ShuffleName

OptimizerName = Literal["adamw", "sparse_adam", "rowwise_adagrad"]
ScheduleName = Literal["one_cycle", "constant"]


@dataclass
class TrainConfig:
    """How the one training loop runs.

    epochs: passes over the training rows.
    batch_size: rows per optimiser step (before gradient accumulation).
    lr: peak learning rate (the top of the one-cycle schedule).
    weight_decay: decoupled (AdamW) weight decay, the course's `wd`.
    schedule: "one_cycle" (warm-up then cosine annealing) or "constant".
    pct_start: fraction of steps spent warming up in one-cycle.
    grad_accum: batches whose gradients are summed before one optimiser step.
    patience: stop after this many epochs without validation improvement (None: never),
        then restore the best epoch's weights.
    seed: seeds initialisation, shuffling and dropout (the global RNG is left untouched).
    device: "cpu", "cuda", "cuda:1", or "auto" (CUDA when available). Under torchrun each
        process uses "cuda:LOCAL_RANK" instead of a CUDA device named here.
    progress: show a progress bar with the live loss.
    optimizer: "adamw" (dense; the default), or one that updates only the rows a batch
        touches (for models whose embeddings give sparse gradients): "rowwise_adagrad"
        (fastest; see `recotorch.train.optimizers`) or "sparse_adam" (lazy Adam).
    amp: run the forward pass under bfloat16 autocast (matrix products in bf16, weights and
        optimiser in fp32); worthwhile on GPUs with bf16 tensor cores.
    shuffle: "random" (a permutation per epoch) or "user_blocks" (blocks of users in random
        order, rows shuffled within each: cache-friendly on large logs; `recotorch.train.ordering`).
    """

    epochs: int = 5
    batch_size: int = 1024
    lr: float = 1e-2
    weight_decay: float = 0.5
    schedule: ScheduleName = "one_cycle"
    pct_start: float = 0.25
    grad_accum: int = 1
    patience: int | None = None
    seed: int = 0
    device: str = "cpu"
    progress: bool = False
    optimizer: OptimizerName = "adamw"
    amp: bool = False
    shuffle: ShuffleName = "random"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.schedule not in ("one_cycle", "constant"):
            raise ValueError(f"schedule must be 'one_cycle' or 'constant', got {self.schedule!r}")
        if self.optimizer not in ("adamw", "sparse_adam", "rowwise_adagrad"):
            raise ValueError(f"optimizer must be 'adamw', 'sparse_adam' or 'rowwise_adagrad', got {self.optimizer!r}")
        if self.shuffle not in ("random", "user_blocks"):
            raise ValueError(f"shuffle must be 'random' or 'user_blocks', got {self.shuffle!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> dict[str, Any]:
        """The fields that change the numbers (not progress display)."""
        d = self.to_dict()
        d.pop("progress")
        # fields added later are left out at their defaults, so older checkpoints still match
        for name, default in (("optimizer", "adamw"), ("amp", False), ("shuffle", "random")):
            if d[name] == default:
                d.pop(name)
        return d
