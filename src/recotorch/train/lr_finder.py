"""Learning-rate finder: raise the rate exponentially over a few hundred steps, watch the loss."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from recotorch.core.device import resolve_device, seeded
from recotorch.core.threads import torch_threads, training_threads
from recotorch.train import lazy_dynamo
from recotorch.train.config import TrainConfig
from recotorch.train.optimizers import make_optimizer
from recotorch.train.trainer import BatchLoss, _common_length, step_work


@dataclass(frozen=True)
class LRFind:
    """Rates tried, smoothed losses seen, and a suggested peak rate."""

    lrs: list[float]
    losses: list[float]
    suggestion: float

    def plot(self, path: str | Path) -> Path:
        """Loss against learning rate (log scale) as a PNG, with the suggestion marked."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        ax.plot(self.lrs, self.losses)
        ax.axvline(self.suggestion, color="tab:red", linestyle="--", label=f"suggested {self.suggestion:.2e}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss (smoothed)")
        ax.set_title("Learning-rate finder")
        ax.legend()
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path)
        plt.close(fig)
        return path


def lr_find(module: nn.Module, batch_loss: BatchLoss, data: dict[str, torch.Tensor], config: TrainConfig,
            *, start: float = 1e-6, end: float = 1.0, steps: int = 200, diverge: float = 4.0) -> LRFind:
    """Try rates from `start` to `end` on copies of the module; the module itself is not changed.

    The optimiser is the one `config.optimizer` names, so sparse-embedding models are probed
    with the row-wise optimiser they will train with.

    The suggestion is a tenth of the rate with the lowest smoothed loss: the loss is still
    falling there, and it is far more stable than the steepest-slope point on noisy batches.
    """
    device = resolve_device(config.device)
    n = _common_length(data)
    original = copy.deepcopy(module.state_dict())
    module.to(device).train()
    data = {k: v.to(device) for k, v in data.items()}
    optimizer = make_optimizer(config.optimizer, module.parameters(), start, config.weight_decay)
    factor = (end / start) ** (1 / max(1, steps - 1))
    lrs, losses, avg, best = [], [], 0.0, math.inf
    gen = torch.Generator().manual_seed(config.seed)
    threads = training_threads(step_work(module, data, config.batch_size), n)  # as the Trainer would train
    with seeded(config.seed, device), torch_threads(threads), lazy_dynamo.deferred():
        for step in range(steps):
            lr = start * factor**step
            for group in optimizer.param_groups:
                group["lr"] = lr
            rows = torch.randint(0, n, (config.batch_size,), generator=gen).to(device)
            loss = batch_loss({k: v[rows] for k, v in data.items()})
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            avg = 0.9 * avg + 0.1 * float(loss.detach())
            smoothed = avg / (1 - 0.9 ** (step + 1))
            lrs.append(lr)
            losses.append(smoothed)
            best = min(best, smoothed)
            if not math.isfinite(smoothed) or smoothed > diverge * best:
                break
    module.load_state_dict(original)
    return LRFind(lrs, losses, lrs[losses.index(min(losses))] / 10)
