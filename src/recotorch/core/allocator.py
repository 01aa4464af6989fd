"""The C allocator's settings for a recotorch process: keep large freed blocks for reuse.

Why: glibc's malloc serves blocks above its mmap threshold (at most 32 MB once it adapts) with a
fresh `mmap` and returns them to the system on `free`, so a training loop that allocates a
34 MB logits buffer per step (SASRec's full softmax on 1,679 items) faults in every page of
it again at every step. Measured on 3 SASRec epochs of ml-100k (2 cores, 2 threads): 1.08M page
faults and 12.7 s with the defaults, 84k faults and 10.4 s with the settings below.

`keep_freed_memory()` raises the mmap threshold to `MMAP_THRESHOLD` and lets up to `TRIM_THRESHOLD`
of free memory stay at the top of the heap (both are needed: setting either one turns off glibc's
own adaptation of the other). Blocks above the threshold (EASE's Gram matrix on a big catalogue)
are still mapped and unmapped as before, so the peak memory of large jobs does not change.

Applied by the CLI entry (`recotorch.cli.main`), a process recotorch owns; in a Python session it is
the caller's choice. A no-op off glibc and when the user tuned malloc through its environment
variables (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, `MALLOC_TOP_PAD_`, `GLIBC_TUNABLES`).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping

MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 512 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


def keep_freed_memory(environ: Mapping[str, str] | None = None) -> bool:
    """Set glibc's mmap and trim thresholds for this process; True when they were set."""
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux") or any(key in env for key in _USER_SETTINGS):
        return False
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                       TRIM_THRESHOLD))


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (musl and others have no `mallopt` of these meanings)."""
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded into the process, the C library's among them
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
    except (OSError, AttributeError):
        return None
    return libc
