"""Store calls off the event loop, on their own thread, with a bounded wait (503 past it).

Feedback writes used to run on the framework's shared thread pool: a database locked by another
process held one pool thread per waiting write, and once the pool was full every sync route
waited too. Here writes go to one dedicated thread (the stores serialise writes anyway), at
most `max_pending` wait for it, and none waits longer than `timeout`: the request gets 503 and,
if its write had not started yet, it never runs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from recotorch.errors import ServiceUnavailableError

T = TypeVar("T")
GRACE_S = 1.0  # the store's own timeouts fire first; this catches a call stuck anywhere else


class StoreGate:
    """Run store calls on one worker thread; `await gate.call(fn, ...)` or ServiceUnavailableError."""

    def __init__(self, timeout: float, max_pending: int = 64) -> None:
        self.timeout = timeout
        self.max_pending = max_pending
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="recotorch-store")
        self._pending = 0
        self._count_lock = threading.Lock()

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._count_lock:
            if self._pending >= self.max_pending:
                raise ServiceUnavailableError(f"the feedback store is busy ({self._pending} writes waiting); "
                                              "retry later")
            self._pending += 1
        deadline = time.monotonic() + self.timeout

        def job() -> T:
            if time.monotonic() > deadline:  # waited in the queue past the bound: the client has its 503
                raise ServiceUnavailableError("the feedback store is busy; retry later")
            return fn(*args, **kwargs)

        try:
            future = asyncio.get_running_loop().run_in_executor(self._pool, job)
            try:
                return await asyncio.wait_for(future, self.timeout + GRACE_S)
            except asyncio.TimeoutError:
                raise ServiceUnavailableError(
                    f"the feedback store did not answer within {self.timeout:g}s; retry later") from None
        finally:
            with self._count_lock:
                self._pending -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
