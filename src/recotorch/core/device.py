"""Devices and seeding, for every layer (training, models that never train with the `Trainer`, serving)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run a block with the RNGs seeded, restoring the caller's RNG state afterwards."""
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def resolve_device(name: str) -> torch.device:
    """"auto" picks CUDA when present; anything else is passed to `torch.device`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def tensor_device(name: str) -> torch.device:
    """Where a fitted model keeps its tensors: `resolve_device(name)` when CUDA exists, else the CPU
    (so a model saved on a GPU machine loads anywhere)."""
    return resolve_device(name) if torch.cuda.is_available() else torch.device("cpu")
