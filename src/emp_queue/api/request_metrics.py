"""API requests by route and status, with latency histograms: a pure ASGI middleware.

The route label is the matched route's template (``/api/jobs/{job_id}``), never the raw
path, so label sets stay bounded; unmatched paths count as ``unmatched``. A pure ASGI
middleware adds a few microseconds per request, where Starlette's ``BaseHTTPMiddleware``
would add a task and a stream per request.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class RequestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "emp_api_requests",
            "HTTP requests answered by this replica, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "emp_api_request_seconds",
            "Time to the response's first byte, by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                route, method = route_of(scope), scope["method"]
                self.metrics.latency.labels(route, method).observe(time.perf_counter() - started)
                self.metrics.requests.labels(route, method, str(status)).inc()
            await send(message)

        await self.app(scope, receive, send_and_observe)


def route_of(scope: MutableMapping[str, Any]) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
