"""The skeleton every service app shares: lifespan-owned worker pool, problem+json errors, body limit, health.

A service passes its own `resources` context manager for whatever else its lifespan owns (models, index,
database engine, HTTP client, scheduler); it is entered after the common state is set up and left first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib.metadata import version

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CollectorRegistry

from textcore.errors import ModelNotReady
from textcore.logs import REQUEST_ID_HEADER
from textcore.settings import ServiceSettings
from textcore.web.api_docs import install_api_docs
from textcore.web.auth import ApiKeyAuth, KeyScope, document_api_keys
from textcore.web.body_limit import BodySizeLimit
from textcore.web.capacity import CapacityLimiter
from textcore.web.health import health_router
from textcore.web.hosts import HostCheck
from textcore.web.problems import install_problem_handlers
from textcore.web.query import KnownQuery
from textcore.web.request_id import RequestId
from textcore.web.security_headers import SecurityHeaders
from textcore.web.telemetry import RequestMetrics, metrics_router

Resources = Callable[[FastAPI], AbstractAsyncContextManager[None]]
ServiceReadyCheck = Callable[[FastAPI], Awaitable[dict[str, str]]]

# What a page of an allowed origin may send: the key, JSON bodies, its own request id, the last event id of a
# resumed stream, and the customer service's Idempotency-Key of a chat message (its retries).
CORS_REQUEST_HEADERS = [
    "Authorization",
    "X-API-Key",
    "Content-Type",
    REQUEST_ID_HEADER,
    "Last-Event-ID",
    "Idempotency-Key",
]
# What such a page may read beyond the headers every browser shows (Content-Type, Cache-Control, ...): the
# request id, a Retry-After, and the Link rel="next" of a paged list (the finance monitor's GET /v1/alerts).
CORS_RESPONSE_HEADERS = [REQUEST_ID_HEADER, "Retry-After", "Link"]


def service_app(
    *,
    title: str,
    distribution: str,
    description: str,
    settings: ServiceSettings,
    resources: Resources | None = None,
    registry: CollectorRegistry | None = None,
    ready: ServiceReadyCheck | None = None,
    key_scope: KeyScope | None = None,
) -> FastAPI:
    """Build a service app whose lifespan owns its state.

    Args:
        title: shown in the OpenAPI document.
        distribution: the installed distribution whose version the app reports.
        description: one line for the OpenAPI document.
        settings: the service's settings; stored on `app.state.settings`.
        resources: the service's own lifespan resources, if any.
        registry: the Prometheus registry served at ``/metrics``; a service passes its own to add domain
            metrics to the request metrics. A new one by default.
        ready: the service's own readiness checks, run after the worker-pool check; it returns one status
            line per resource or raises a `CoreError` (e.g. `ModelNotReady`) while the service cannot serve.
        key_scope: keys of a narrower scope, which may call only the routes it names (403 elsewhere); they
            need `settings.api_keys` set, else the other routes would be open.

    Every response carries the request's id in ``X-Request-ID`` (`textcore.web.request_id`) and the
    security headers of `textcore.web.security_headers` (``nosniff``, ``Cache-Control: no-store``). Its API
    docs (``/docs``, ``/redoc``) load nothing from another host (`textcore.web.api_docs`). With
    `settings.cors_origins` set, pages of those origins may call it from a browser. With
    `settings.api_keys` set, every request but the health probes and the API docs must carry one of
    the keys (`textcore.web.auth`), or one of `key_scope`'s on the routes it names. With
    `settings.allowed_hosts` set, every request but the health probes must name one of them in its Host
    header (`textcore.web.hosts`). Every route takes only the query parameters it declares, each once
    unless it takes a list (`textcore.web.query`): any other, or one sent twice, is a 422 naming it.

    Raises:
        ValueError: `key_scope` has keys but `settings.api_keys` is not set.

    Returns:
        The app. `app.state.limiter` is the `CapacityLimiter` that runs blocking model calls;
        `app.state.metrics` is the Prometheus registry.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.limiter = CapacityLimiter(settings.max_workers, settings.max_queue)
        try:
            if resources is None:
                yield
            else:
                async with resources(app):
                    yield
        finally:
            del app.state.limiter

    # A dependency of the app is one of every route, present and future, whichever router it comes from.
    app = FastAPI(
        title=title,
        version=version(distribution),
        description=description,
        lifespan=lifespan,
        dependencies=[Depends(KnownQuery())],
        # The docs pages are the service's own, with their files (`textcore.web.api_docs`): none from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_api_docs(app)

    async def ready_check() -> dict[str, str]:
        limiter: CapacityLimiter | None = getattr(app.state, "limiter", None)
        if limiter is None:
            raise ModelNotReady("expected the lifespan to have built the worker pool, found none")
        checks = {"workers": f"{limiter.in_flight} of {limiter.max_workers} busy"}
        if ready is not None:
            checks.update(await ready(app))
        return checks

    app.state.metrics = registry = registry or CollectorRegistry(auto_describe=True)
    install_problem_handlers(app)
    # The last added runs first: every response gets the security headers, requests get their id, are
    # counted, refused if they name another host, answered if they are a browser's CORS preflight (which
    # carries no key), then their key is checked, then their body bounded.
    prefix = settings.model_config.get("env_prefix", "")
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        setting=f"{prefix}MAX_BODY_BYTES",
        timeout=settings.body_timeout,
        timeout_setting=f"{prefix}BODY_TIMEOUT",
    )
    scoped = key_scope if key_scope is not None and key_scope.keys else None
    if scoped is not None and not settings.api_keys:
        raise ValueError(
            f"expected {prefix}API_KEYS as well as keys of a narrower scope: without it every other route "
            "would be open to anyone"
        )
    if settings.api_keys:
        keys = [key.get_secret_value() for key in settings.api_keys]
        app.add_middleware(ApiKeyAuth, keys=keys, realm=title, scope=scoped)
        document_api_keys(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_RESPONSE_HEADERS,
            max_age=600,
        )
    if settings.allowed_hosts:
        app.add_middleware(HostCheck, hosts=settings.allowed_hosts, setting=f"{prefix}ALLOWED_HOSTS")
    app.add_middleware(RequestMetrics, registry=registry)
    app.add_middleware(RequestId)
    app.add_middleware(SecurityHeaders)
    app.include_router(health_router(ready_check))
    app.include_router(metrics_router(registry))
    return app
