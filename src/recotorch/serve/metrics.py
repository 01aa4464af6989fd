"""Prometheus metrics in the text exposition format, written by hand (no extra dependency).

We need one counter and one histogram labelled by route template, method and status, for a
single process; `prometheus_client` would add a dependency and a registry for that. The route
label is the template (`/users/{user_id}/recommendations`), never the raw path, so the number of
series stays bounded whatever ids clients send.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
UNMATCHED = "<unmatched>"


class Metrics:
    """Request counts and a latency histogram per (route, method); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self._sums: dict[tuple[str, str], float] = defaultdict(float)
        self._gauges: dict[str, Callable[[], float]] = {}
        self._counters: dict[str, int] = defaultdict(int)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(route, method, str(status))] += 1
            self._buckets[(route, method)][bisect.bisect_left(BUCKETS, seconds)] += 1
            self._sums[(route, method)] += seconds

    def inc(self, name: str, by: int = 1) -> None:
        """A free-standing counter, e.g. `model_reloads_total`."""
        with self._lock:
            self._counters[name] += by

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        """A value read at scrape time, e.g. the number of items of the model being served."""
        self._gauges[name] = read

    def render(self) -> str:
        """The text exposition format, version 0.0.4."""
        out = ["# HELP recotorch_http_requests_total HTTP requests by route template, method and status.",
               "# TYPE recotorch_http_requests_total counter"]
        with self._lock:
            requests = sorted(self._requests.items())
            buckets = sorted((k, list(v)) for k, v in self._buckets.items())
            sums = dict(self._sums)
            counters = sorted(self._counters.items())
        for (route, method, status), n in requests:
            labels = f'route="{_esc(route)}",method="{method}",status="{status}"'
            out.append(f"recotorch_http_requests_total{{{labels}}} {n}")
        out += ["# HELP recotorch_http_request_duration_seconds Time from request start to response end.",
                "# TYPE recotorch_http_request_duration_seconds histogram"]
        for (route, method), counts in buckets:
            labels = f'route="{_esc(route)}",method="{method}"'
            total = 0
            for le, n in zip((*BUCKETS, "+Inf"), counts, strict=True):
                total += n
                out.append(f'recotorch_http_request_duration_seconds_bucket{{{labels},le="{le}"}} {total}')
            out.append(f"recotorch_http_request_duration_seconds_sum{{{labels}}} {sums[(route, method)]:.6f}")
            out.append(f"recotorch_http_request_duration_seconds_count{{{labels}}} {total}")
        for name, n in counters:
            out += [f"# TYPE recotorch_{name} counter", f"recotorch_{name} {n}"]
        for name, read in sorted(self._gauges.items()):
            try:
                value = float(read())
            except Exception:  # a gauge must never break the scrape
                continue
            out += [f"# TYPE recotorch_{name} gauge", f"recotorch_{name} {value:g}"]
        return "\n".join(out) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsMiddleware:
    """Pure ASGI middleware: times each HTTP request and records its route template and status."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tic = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            if template.startswith("/static"):
                template = "/static"
            self.metrics.observe(template, scope.get("method", "GET"), status, time.perf_counter() - tic)
