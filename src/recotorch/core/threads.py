"""How many threads recotorch's CPU work runs on: the one thread policy.

Why a policy: torch's OpenMP threads meet at a barrier at the end of every parallel operation.
When other processes keep the cores busy, one of the threads is often off its core, and a
training step made of dozens of small operations waits up to a scheduler time slice at each of
them. Measured on 2 cores beside two CPU-bound processes, the default MF fit of ml-100k took
235 s with 2 threads and 23 s with 1 (benchmarks/busy.py).

The policy, applied by the CLI entry and the `Trainer`:

- `prepare_process()` (the CLI entry, before torch is imported) makes idle OpenMP threads
  sleep instead of spinning (`OMP_WAIT_POLICY=PASSIVE`, `KMP_BLOCKTIME=0`), unless the user
  chose a wait policy (`OMP_WAIT_POLICY` or `GOMP_SPINCOUNT` set), so a waiting thread does
  not take CPU from the one it waits for.
- `set_threads(n)` (the global `recotorch --threads N`, `RECOTORCH_THREADS`, or else an
  `OMP_NUM_THREADS` the user set; `recotorch.set_threads` in Python) fixes the count for everything:
  torch's intra-op threads, the compiled (Numba) kernels, which follow torch's count, and
  FAISS in `serve`.
- Otherwise a training loop runs on one thread when its steps are small (`training_threads`:
  fewer than `SMALL_STEP` multiply-adds per step, e.g. MF and neural CF at their default sizes),
  where splitting every operation costs more than it gains even on a quiet machine; on every
  available core when they are large; and a compiled step (its kernels own whole rows per
  thread) on every core once an epoch has `LARGE_EPOCH` rows. Preparing a fit's data (ids,
  seen items, biases) runs on one thread below `LARGE_EPOCH` rows (`preparation_threads`), for
  every model in `Estimator.fit`, and so does all of a gradient model's fit outside its loop.
  Other heavy work (EASE's and ALS's solves, scoring whole catalogues) keeps every core.

The choice depends on sizes only, never on the machine's load, so a run computes the same
numbers on a busy machine as on a quiet one.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, MutableMapping

SMALL_STEP = 1 << 25  # multiply-adds per training step below which one thread is faster
LARGE_EPOCH = 1 << 20  # rows per epoch from which a compiled step uses every core
PASSIVE_WAIT = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
_USER_WAIT_POLICY = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")

_requested: int | None = None


def prepare_process(environ: MutableMapping[str, str] | None = None) -> bool:
    """Ask for passive OpenMP waiting; True when set. Only before torch is imported (OpenMP reads its
    environment when loaded) and only when the user has not chosen a wait policy."""
    env = os.environ if environ is None else environ
    if "torch" in sys.modules or any(key in env for key in _USER_WAIT_POLICY):
        return False
    env.update(PASSIVE_WAIT)
    return True


def set_threads(n: int | None) -> None:
    """Fix the number of CPU threads for everything recotorch runs (None: the policy decides).

    Applied to torch at once when it is imported, else through OMP_NUM_THREADS for when it is.
    """
    global _requested
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"threads must be a whole number >= 1, not {n!r}")
    _requested = n
    if n is None:
        return
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
    else:
        os.environ["OMP_NUM_THREADS"] = str(n)


def threads_from_environment(environ: MutableMapping[str, str] | None = None) -> int | None:
    """A count the user fixed with OMP_NUM_THREADS (a whole number >= 1), which the CLI takes as `--threads`."""
    value = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) >= 1 else None


def requested_threads() -> int | None:
    """The count fixed by `set_threads` (`--threads`), or None."""
    return _requested


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def training_threads(step_work: float, epoch_rows: int = 0, *, compiled: bool = False) -> int:
    """Threads for a training loop whose step does about `step_work` multiply-adds.

    `compiled`: the step is a compiled kernel (Numba) whose threads own rows; it gets every core
    once the epoch has `LARGE_EPOCH` rows. `--threads` overrides both rules.
    """
    if _requested is not None:
        return _requested
    large = epoch_rows >= LARGE_EPOCH if compiled else step_work >= SMALL_STEP
    return available_cores() if large else 1


def preparation_threads(rows: int) -> int:
    """Threads for preparing a fit's data (compact ids, seen-item sets, biases, orders): tensor operations
    over the rows, each too short to split below `LARGE_EPOCH` rows. `--threads` overrides."""
    if _requested is not None:
        return _requested
    return available_cores() if rows >= LARGE_EPOCH else 1


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with `n` torch intra-op threads, restoring the caller's count afterwards."""
    import torch

    before = torch.get_num_threads()
    if n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
