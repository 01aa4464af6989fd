"""Work done once per process, now or on a background thread: loading compiled kernels.

Numba's start-up (about half a second) is paid once per process; `Once.start()` runs it on a
daemon thread so that it overlaps with what comes before a fit (reading the data), and `get()`
returns the result, waiting for that thread rather than loading twice.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Once(Generic[T]):
    """The result of `load()`, computed by the first caller of `get` (or by `start`'s thread); thread-safe."""

    def __init__(self, load: Callable[[], T], name: str) -> None:
        self._load, self._name = load, name
        self._lock = threading.Lock()
        self._value: list[T] = []
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    @property
    def done(self) -> bool:
        return bool(self._value)

    @property
    def started(self) -> bool:
        """True once the work is done or under way on a thread."""
        return self.done or self._thread is not None

    def get(self) -> T:
        with self._lock:
            if not self._value:
                self._value.append(self._load())
        return self._value[0]

    def start(self, only_if: Callable[[], bool] | None = None) -> None:
        """`get` on a daemon thread; a no-op when done or under way. `only_if` is asked on that thread
        first (an import, such as whether Numba is installed, then costs the caller nothing)."""
        if not self.started:
            run = self.get if only_if is None else lambda: only_if() and self.get()
            self._thread = threading.Thread(target=run, name=self._name, daemon=True)
            self._thread.start()

    def _after_fork_in_child(self) -> None:
        # a fork while the thread held the lock must not leave the child waiting for it forever
        self._lock = threading.Lock()
        self._thread = None
