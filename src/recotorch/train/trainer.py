"""The one training loop: every gradient-trained model supplies a batch loss, this owns the rest."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from recotorch.core.device import resolve_device, seeded
from recotorch.core.threads import torch_threads, training_threads
from recotorch.train import distributed, lazy_dynamo
from recotorch.train.config import TrainConfig
from recotorch.train.optimizers import make_optimizer
from recotorch.train.ordering import UserBlocks
from recotorch.train.progress import EpochProgress

BatchLoss = Callable[[dict[str, torch.Tensor]], torch.Tensor]
Validate = Callable[[], float]
FUSED_CHUNK_BATCHES = 64  # batches gathered at once by the fused path (8192-row batches: ~10 MB)
# computes its own gradients and applies the optimiser's update; returns the batch loss
FusedStep = Callable[[dict[str, torch.Tensor], torch.Tensor, torch.optim.Optimizer], torch.Tensor]
ParamGroups = list[dict[str, Any]]


class BatchSource(Protocol):
    """Batches a model builds itself (e.g. episodes of meta-training), instead of slices of equal-length rows.

    `batches(epoch)` yields the epoch's batches (dicts of tensors; the first tensor's length counts as
    the batch's rows); it is called once per epoch in order, also for epochs a resumed run skips, when
    it must only advance its random state (`skip=True`), so a resumed run draws what an uninterrupted
    one would.
    """

    steps_per_epoch: int

    def __call__(self, epoch: int, *, skip: bool = False) -> Iterable[dict[str, torch.Tensor]]: ...


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    valid_loss: float | None
    lr: float
    seconds: float


@dataclass
class History:
    """Per-epoch records plus per-step losses (for learning curves)."""

    epochs: list[EpochRecord] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    resumed_from: int | None = None

    @property
    def seconds(self) -> float:
        return sum(e.seconds for e in self.epochs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        return cls(**{**d, "epochs": [EpochRecord(**e) for e in d["epochs"]]})


class Trainer:
    """Mini-batch training over tensors: shuffled index slices, AdamW, one-cycle, checkpoints.

    `data` is a dict of equal-length tensors (e.g. user_idx, item_idx, rating); each step hands
    `batch_loss` the same dict sliced to one batch. With `checkpoint_dir`, the state after each
    epoch is written there atomically; `resume=True` continues from it, giving the same numbers
    as an uninterrupted run because every epoch's shuffling and dropout are seeded by its number.

    `config.optimizer` picks AdamW or a row-sparse optimiser (`recotorch.train.optimizers`) and
    `config.amp` bfloat16 autocast. Launched by torchrun with WORLD_SIZE > 1, each process takes
    its slice of every global batch and gradients are summed over processes
    (`recotorch.train.distributed`); only rank 0 writes checkpoints.
    """

    def __init__(self, config: TrainConfig, *, checkpoint_dir: str | Path | None = None,
                 resume: bool = False, fingerprint: dict[str, Any] | None = None,
                 checkpoint_name: str = "checkpoint.pt") -> None:
        self.config = config
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.checkpoint_name = checkpoint_name  # a second stage of one fit (meta-training) keeps its own file
        self.resume = resume
        self.fingerprint = json.dumps({"config": config.fingerprint(), **(fingerprint or {})}, sort_keys=True)
        self.device = resolve_device(config.device)
        self._blocks: UserBlocks | None = None

    def fit(self, module: nn.Module, batch_loss: BatchLoss, data: dict[str, torch.Tensor],
            validate: Validate | None = None, *, fused_step: FusedStep | None = None,
            batches: BatchSource | None = None, param_groups: ParamGroups | None = None) -> History:
        """Train `module` on `data`; `validate` (lower is better) runs after each epoch.

        `fused_step`, when given, replaces loss + backward + optimiser step for single-process
        fp32 runs without gradient accumulation (e.g. `FusedDotBiasStep`); it must do exactly
        what those would, since the other cases still take the generic path.
        `batches` replaces the shuffled slices of `data` (which may then be empty) by the model's own
        batches (`BatchSource`, single process); `param_groups` (torch's form, e.g. a learning rate
        of its own for some parameters) replaces `module.parameters()` in the optimiser.
        """
        with lazy_dynamo.deferred():  # no 0.8 s import of torch._dynamo for the optimiser's bookkeeping
            return self._fit(module, batch_loss, data, validate, fused_step=fused_step, batches=batches,
                             param_groups=param_groups)

    def _fit(self, module: nn.Module, batch_loss: BatchLoss, data: dict[str, torch.Tensor],
             validate: Validate | None, *, fused_step: FusedStep | None, batches: BatchSource | None,
             param_groups: ParamGroups | None) -> History:
        cfg = self.config
        self.device = distributed.setup(self.device)
        module.to(self.device)
        distributed.broadcast_module(module)
        self._blocks = None
        if batches is None:
            n = _common_length(data)
            data = {k: _to_device(v, self.device) for k, v in data.items()}
            if cfg.shuffle == "user_blocks":
                data, self._blocks = UserBlocks.sort(data)
            n_batches = math.ceil(n / cfg.batch_size)
        else:
            if distributed.is_distributed():
                raise ValueError("a model's own batches (meta-training) run in one process")
            n, n_batches = 0, max(1, batches.steps_per_epoch)
        steps_per_epoch = math.ceil(n_batches / cfg.grad_accum)
        optimizer = make_optimizer(cfg.optimizer, param_groups or module.parameters(), cfg.lr, cfg.weight_decay)
        scheduler = _make_schedule(optimizer, cfg, cfg.epochs * steps_per_epoch)
        history, best_state, start = History(), None, 0
        state = self._load_checkpoint()
        if state is not None:
            module.load_state_dict(state["module"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            history = History.from_dict(json.loads(state["history"]))
            best_state = state.get("best")
            start = history.epochs[-1].epoch + 1 if history.epochs else 0
            history.resumed_from = start
        if batches is not None:
            for epoch in range(start):  # a resumed run: advance the source's random state
                for _ in batches(epoch, skip=True):
                    pass
        bar = EpochProgress(enabled=cfg.progress, total_epochs=cfg.epochs, steps=n_batches)
        threads = training_threads(step_work(module, data, cfg.batch_size), n,
                                   compiled=batches is None and self._can_fuse(fused_step))
        with torch_threads(threads), bar:  # the thread policy: recotorch.core.threads
            for epoch in range(start, cfg.epochs):
                if history.stopped_early:
                    break
                tic = time.perf_counter()
                if batches is not None:
                    train_loss = self._run_source(module, batch_loss, batches, epoch, optimizer, scheduler, history,
                                                  bar)
                else:
                    train_loss = self._run_epoch(module, batch_loss, data, n, epoch, optimizer, scheduler, history,
                                                 bar, fused_step if self._can_fuse(fused_step) else None)
                valid_loss = None
                if validate is not None:
                    module.eval()
                    with torch.no_grad():
                        valid_loss = float(validate())
                    module.train()
                history.epochs.append(EpochRecord(epoch, train_loss, valid_loss,
                                                  optimizer.param_groups[0]["lr"], time.perf_counter() - tic))
                bar.end_epoch(epoch, train_loss, valid_loss)
                if valid_loss is not None:
                    best_state = self._track_best(module, history, best_state)
                self._save_checkpoint(module, optimizer, scheduler, history, best_state)
        if best_state is not None and cfg.patience is not None:
            module.load_state_dict(best_state)
        module.eval()
        return history

    def _run_epoch(self, module: nn.Module, batch_loss: BatchLoss, data: dict[str, torch.Tensor], n: int,
                   epoch: int, optimizer: torch.optim.Optimizer, scheduler: Any, history: History,
                   bar: EpochProgress, fused_step: FusedStep | None = None) -> float:
        cfg = self.config
        module.train()
        shuffle = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        order = (torch.randperm(n, generator=shuffle) if self._blocks is None
                 else self._blocks.epoch_order(shuffle)).to(self.device)
        total = torch.zeros((), device=self.device)
        n_batches = math.ceil(n / cfg.batch_size)
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if cfg.amp
                    else contextlib.nullcontext())
        with seeded(cfg.seed + 1 + epoch, self.device):  # dropout etc.
            if fused_step is not None:
                return self._run_fused(fused_step, data, order, n, epoch, optimizer, scheduler, history, bar)
            for b in range(n_batches):
                rows, weight = distributed.shard(order[b * cfg.batch_size : (b + 1) * cfg.batch_size])
                with autocast:
                    loss = batch_loss({k: v.index_select(0, rows) for k, v in data.items()})
                if cfg.amp:
                    loss = loss.float()  # the loss and its scaling in fp32, whatever autocast made
                scaled = loss / cfg.grad_accum
                (scaled if weight == 1.0 else scaled * weight).backward()
                last = b == n_batches - 1
                if (b + 1) % cfg.grad_accum == 0 or last:
                    distributed.sync_gradients(module.parameters())
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                total += loss.detach() * (rows.numel() if weight else 0)
                if b % 16 == 0 or last:  # a sync every 16 steps keeps the bar live but cheap
                    value = float(loss.detach())
                    history.step_losses.append(value)
                    bar.step(epoch, b + 1, value)
        distributed.all_reduce_sum(total)
        return float(total) / n

    def _run_source(self, module: nn.Module, batch_loss: BatchLoss, source: BatchSource, epoch: int,
                    optimizer: torch.optim.Optimizer, scheduler: Any, history: History, bar: EpochProgress) -> float:
        """One epoch over a model's own batches: the generic step (accumulation and amp included)."""
        cfg = self.config
        module.train()
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if cfg.amp
                    else contextlib.nullcontext())
        total, rows_seen, pending = torch.zeros((), device=self.device), 0, False
        with seeded(cfg.seed + 1 + epoch, self.device):
            for b, batch in enumerate(source(epoch)):
                batch = {k: _to_device(v, self.device) for k, v in batch.items()}
                rows = next(iter(batch.values())).shape[0]
                with autocast:
                    loss = batch_loss(batch)
                if cfg.amp:
                    loss = loss.float()
                (loss / cfg.grad_accum).backward()
                pending = True
                if (b + 1) % cfg.grad_accum == 0:
                    self._step(optimizer, scheduler)
                    pending = False
                total += loss.detach() * rows
                rows_seen += rows
                if b % 16 == 0:
                    value = float(loss.detach())
                    history.step_losses.append(value)
                    bar.step(epoch, b + 1, value)
            if pending:
                self._step(optimizer, scheduler)
        return float(total) / max(rows_seen, 1)

    @staticmethod
    def _step(optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    def _can_fuse(self, fused_step: FusedStep | None) -> bool:
        cfg = self.config
        return fused_step is not None and cfg.grad_accum == 1 and not cfg.amp and not distributed.is_distributed()

    def _run_fused(self, step: FusedStep, data: dict[str, torch.Tensor], order: torch.Tensor, n: int, epoch: int,
                   optimizer: torch.optim.Optimizer, scheduler: Any, history: History, bar: EpochProgress) -> float:
        cfg = self.config
        total = torch.zeros((), device=self.device)
        n_batches = math.ceil(n / cfg.batch_size)
        span = cfg.batch_size * FUSED_CHUNK_BATCHES
        positions = torch.arange(span, device=self.device)
        for b in range(n_batches):
            at = (b * cfg.batch_size) % span
            if at == 0:  # gather the next chunk of rows in epoch order, so each batch reads contiguous memory
                chunk = {k: v.index_select(0, order[b * cfg.batch_size : b * cfg.batch_size + span])
                         for k, v in data.items()}
            rows = positions[at : min(at + cfg.batch_size, chunk["user_idx"].numel())]
            loss = step(chunk, rows, optimizer)
            optimizer.step()  # no gradients are pending, so a no-op; it keeps the scheduler's bookkeeping right
            scheduler.step()
            total += loss * rows.numel()
            if b % 16 == 0 or b == n_batches - 1:
                value = float(loss)
                history.step_losses.append(value)
                bar.step(epoch, b + 1, value)
        return float(total) / n

    def _track_best(self, module: nn.Module, history: History, best_state: dict | None) -> dict | None:
        cfg = self.config
        current = history.epochs[-1]
        best = history.best_epoch
        best_loss = None if best is None else next(e.valid_loss for e in history.epochs if e.epoch == best)
        if best_loss is None or current.valid_loss < best_loss:  # type: ignore[operator]
            history.best_epoch = current.epoch
            return copy.deepcopy({k: v.detach().cpu() for k, v in module.state_dict().items()})
        if cfg.patience is not None and current.epoch - history.best_epoch >= cfg.patience:  # type: ignore[operator]
            history.stopped_early = True
        return best_state

    # ---- checkpoints ----------------------------------------------------------------------
    @property
    def _checkpoint_path(self) -> Path | None:
        return None if self.checkpoint_dir is None else self.checkpoint_dir / self.checkpoint_name

    def _load_checkpoint(self) -> dict[str, Any] | None:
        path = self._checkpoint_path
        if not self.resume or path is None or not path.exists():
            return None
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["fingerprint"] != self.fingerprint:
            raise ValueError(f"{path} was written by a run with other settings or data; "
                             "remove it or run without resume")
        return state

    def _save_checkpoint(self, module: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                         history: History, best_state: dict | None) -> None:
        path = self._checkpoint_path
        if path is None or not distributed.is_main_process():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"module": module.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "history": json.dumps(history.to_dict()),
                    "best": best_state, "fingerprint": self.fingerprint}, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)


def _make_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> Any:
    if cfg.schedule == "one_cycle" and total_steps >= 4:
        # each phase needs at least one whole step, which very short runs would not give it
        pct = min(max(cfg.pct_start, 1.5 / total_steps), 1 - 1.5 / total_steps)
        momentum = "betas" in optimizer.defaults or "momentum" in optimizer.defaults  # Adagrad has none
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total_steps,
                                                   pct_start=pct, cycle_momentum=momentum)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def step_work(module: nn.Module, data: dict[str, torch.Tensor], batch_size: int) -> float:
    """Multiply-adds of one training step, roughly: rows x positions per row (sequence models) x
    (the width of each embedding table, of which a row reads one row, + every other parameter), x 3
    for the forward and backward passes. Only its size class matters (`training_threads`)."""
    tables = {id(layer.weight) for layer in module.modules() if isinstance(layer, (nn.Embedding, nn.EmbeddingBag))}
    width = sum(p.shape[-1] if id(p) in tables else p.numel() for p in module.parameters())
    positions = max((math.prod(v.shape[1:]) for v in data.values()), default=1)
    return 3.0 * batch_size * positions * width


def _common_length(data: dict[str, torch.Tensor]) -> int:
    lengths = {k: v.shape[0] for k, v in data.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"training tensors differ in length: {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError("no training rows")
    return n


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)
