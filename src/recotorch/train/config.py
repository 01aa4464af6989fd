"""Training hyper-parameters shared by every model trained by gradient descent."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal


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
    device: "cpu", "cuda", "cuda:1", or "auto" (CUDA when available).
    progress: show a progress bar with the live loss.
    """

    epochs: int = 5
    batch_size: int = 1024
    lr: float = 1e-2
    weight_decay: float = 0.5
    schedule: Literal["one_cycle", "constant"] = "one_cycle"
    pct_start: float = 0.25
    grad_accum: int = 1
    patience: int | None = None
    seed: int = 0
    device: str = "cpu"
    progress: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.schedule not in ("one_cycle", "constant"):
            raise ValueError(f"schedule must be 'one_cycle' or 'constant', got {self.schedule!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> dict[str, Any]:
        """The fields that change the numbers (not progress display)."""
        d = self.to_dict()
        d.pop("progress")
        return d
