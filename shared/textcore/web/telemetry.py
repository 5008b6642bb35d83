"""Prometheus metrics for every service: request counts and latencies by route template, served at /metrics.

Each app owns its `CollectorRegistry` (no process-global state, so several apps can live in one process, as
they do in tests); a service registers its own domain metrics on the same registry.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from textcore.web.query import any_query

# Methods counted under their own name; any other (a client may send anything) is counted as "OTHER", so
# that no client can add label values, hence series, without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds; covers a 1 ms health check up to a slow batch classification.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RequestMetrics:
    """Pure-ASGI middleware counting requests and timing them by method, route template and status.

    The route template (``/v1/sources/{source_id}``) rather than the raw path keeps label cardinality bounded;
    requests no route matched are counted under ``unmatched``, and methods outside `METHODS` as ``OTHER``.
    """

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "http_requests", "HTTP requests handled.", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time from request start to the end of the response.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before sending a response

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = str(scope.get("method", ""))
            method = method if method in METHODS else "OTHER"
            self.requests.labels(method, template, str(status)).inc()
            self.latency.labels(method, template).observe(time.perf_counter() - started)


def metrics_router(registry: CollectorRegistry) -> APIRouter:
    """`GET /metrics` in the Prometheus text format."""
    router = APIRouter(tags=["health"])

    # Whatever query a scrape carries (a scrape config's `params:`) gets every metric, as none does.
    @router.get("/metrics", response_class=Response, summary="Prometheus metrics")
    @any_query
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
