"""Wall seconds, CPU seconds and peak memory of one fit.

Peak memory is the highest resident set size seen while the fit ran, above the size when it started,
sampled every 20 ms from /proc (Linux); elsewhere the process's lifetime peak (`ru_maxrss`) is all
there is, and that is what is reported.
"""

from __future__ import annotations

import resource
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

_STATM = Path("/proc/self/statm")
_PAGE = resource.getpagesize()


def _rss() -> int | None:
    try:
        return int(_STATM.read_text().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _lifetime_peak() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class Measured:
    """`with Measured() as m: fit()`, then `m.seconds`, `m.cpu_seconds`, `m.peak_bytes`."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_rss: int | None = None
        self._peak_rss = 0

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            now = _rss()
            if now is not None and now > self._peak_rss:
                self._peak_rss = now

    def __enter__(self) -> Measured:
        self._start_rss = _rss()
        self._peak_rss = self._start_rss or 0
        if self._start_rss is not None:
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        self._tic, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.seconds = time.perf_counter() - self._tic
        self.cpu_seconds = time.process_time() - self._cpu
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            now = _rss() or 0
            self.peak_bytes = max(self._peak_rss, now) - (self._start_rss or 0)
        else:
            self.peak_bytes = _lifetime_peak()
