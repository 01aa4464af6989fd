"""Data parallelism under `torchrun`: one process per device, each taking a slice of every batch.

`torchrun --nproc_per_node=N -m recotorch fit ...` starts N copies of the same command with
RANK, LOCAL_RANK and WORLD_SIZE set. The `Trainer` then

1. joins the process group (NCCL for CUDA, gloo for CPU) and puts each rank on
   cuda:LOCAL_RANK when training on CUDA;
2. gives every rank the same seeded permutation, and rank r the r-th contiguous slice of each
   global batch (`shard`), weighted so that the summed gradients are those of the whole batch;
3. after backward, sums gradients over ranks (`sync_gradients`): one all-reduce over the dense
   gradients, and an all-gather of (row index, row) pairs for row-sparse embedding gradients;
4. leaves writing (checkpoints, model directories) to rank 0: `is_main_process()`.

Why not wrap the module in `DistributedDataParallel`: DDP only synchronises when the forward
pass goes through its wrapper, and recotorch's estimators compute their batch loss from their
own module. Summing gradients after backward is the same arithmetic (without overlapping
communication with backward, which matters little for embedding models), and it also works
for sparse embedding gradients on NCCL, which DDP does not support.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn


def world_size() -> int:
    """Number of processes (1 when not launched by torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0 (and when not distributed): the process that writes files."""
    return rank() == 0


def is_distributed() -> bool:
    """True when launched with WORLD_SIZE > 1 (whether or not the group is joined yet)."""
    return world_size() > 1


def _joined() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def setup(device: torch.device) -> torch.device:
    """Join the process group when WORLD_SIZE > 1 (once per process); this rank's device.

    CUDA devices become cuda:LOCAL_RANK with NCCL; anything else uses gloo.
    """
    if not is_distributed():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_teardown)
    return device


def _teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard(rows: torch.Tensor, n_rows_total: int | None = None) -> tuple[torch.Tensor, float]:
    """This rank's contiguous slice of a global batch, and the weight of its loss.

    The weight is (local rows / global rows), so summing the weighted per-rank mean losses
    over ranks gives the global mean. A rank whose slice is empty (a final batch smaller than
    the world) gets one row with weight 0, so it still joins the collective calls.
    """
    world = world_size()
    if world == 1:
        return rows, 1.0
    total = rows.numel() if n_rows_total is None else n_rows_total
    local = torch.tensor_split(rows, world)[rank()]
    if local.numel() == 0:
        return rows[:1], 0.0
    return local, local.numel() / total


def broadcast_module(module: nn.Module) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if not _joined():
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of `t` over ranks (in place; returned for convenience)."""
    if _joined():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier() -> None:
    """Wait for every rank (a no-op unless the process group is joined)."""
    if _joined():
        dist.barrier()


def sync_gradients(params: Iterable[nn.Parameter]) -> None:
    """Sum `.grad` over ranks: dense gradients in one flat all-reduce per dtype, row-sparse
    gradients by gathering every rank's (index, row) pairs (their concatenation is the sum).

    Every rank must hold gradients for the same parameters (true when all run the same code).
    """
    if not _joined():
        return
    dense: dict[torch.dtype, list[nn.Parameter]] = {}
    sparse: list[nn.Parameter] = []
    for p in params:
        if p.grad is None:
            continue
        (sparse if p.grad.is_sparse else dense.setdefault(p.grad.dtype, [])).append(p)
    for group in dense.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])  # type: ignore[union-attr]
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in group:
            n = p.grad.numel()  # type: ignore[union-attr]
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))  # type: ignore[union-attr]
            offset += n
    if sparse:
        _gather_sparse(sparse)


def _gather_sparse(params: list[nn.Parameter]) -> None:
    world = world_size()
    device = params[0].grad.device  # type: ignore[union-attr]
    counts = torch.tensor([p.grad._nnz() for p in params], dtype=torch.int64, device=device)  # type: ignore[union-attr]
    every = [torch.empty_like(counts) for _ in range(world)]
    dist.all_gather(every, counts)
    sizes = torch.stack(every).cpu()  # (world, n_params)
    for j, p in enumerate(params):
        grad = p.grad
        idx, values = grad._indices()[0], grad._values()  # type: ignore[union-attr]
        most = int(sizes[:, j].max())
        pad = most - idx.numel()
        if pad:
            idx = torch.cat([idx, idx.new_zeros(pad)])
            values = torch.cat([values, values.new_zeros((pad, *values.shape[1:]))])
        all_idx = [torch.empty_like(idx) for _ in range(world)]
        all_values = [torch.empty_like(values) for _ in range(world)]
        dist.all_gather(all_idx, idx.contiguous())
        dist.all_gather(all_values, values.contiguous())
        keep = [int(sizes[r, j]) for r in range(world)]
        idx = torch.cat([t[:k] for t, k in zip(all_idx, keep, strict=True)])
        values = torch.cat([t[:k] for t, k in zip(all_values, keep, strict=True)])
        p.grad = torch.sparse_coo_tensor(idx.unsqueeze(0), values, grad.shape,  # type: ignore[union-attr]
                                         check_invariants=False)
