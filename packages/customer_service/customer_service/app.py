"""Application factory of the customer service.

Run with ``uvicorn --factory customer_service.app:create_app`` or ``customer-service serve``. The lifespan
builds the service (`customer_service.service.open_service`): database, knowledge base and its index,
models, generator, bot; with ``CS_SESSION_RETENTION_DAYS`` set it also runs the retention limit
(`customer_service.retention`) until shutdown, counting the sessions it erases on ``/metrics``
(``customer_service_sessions_expired_total``).
With ``CS_CHAT_API_KEYS`` set (and ``CS_API_KEYS``), keys a chat widget can ship in its page may call the
chat endpoints (`CHAT_ROUTES`) and nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError

from customer_service.retention import running_retention
from customer_service.routes import analytics, chat, knowledge, sessions
from customer_service.service import CustomerService, open_service
from customer_service.settings import CustomerServiceSettings
from textcore import ModelNotReady
from textcore.sql import error_summary
from textcore.web import KeyScope, service_app

# What a customer's chat front end calls, and so all that a chat key (CS_CHAT_API_KEYS) may call. Reading a
# session is not among them: session ids may be chosen by the client (a guessable one would show another
# customer's turns), and the agent console reads them with an operator key.
CHAT_ROUTES = (("POST", "/v1/chat"), ("POST", "/v1/chat/stream"), ("POST", "/v1/feedback"))
CHAT_ONLY = "this key may call the chat endpoints only (POST /v1/chat, /v1/chat/stream and /v1/feedback)"


def create_app(settings: CustomerServiceSettings | None = None) -> FastAPI:
    """Build the customer service; settings are read from ``CS_*`` environment variables when omitted."""
    settings = settings or CustomerServiceSettings()

    @asynccontextmanager
    async def resources(app: FastAPI) -> AsyncIterator[None]:
        async with (
            open_service(settings, app.state.limiter) as service,
            running_retention(
                service.conversations,
                settings.session_retention_days,
                expired,
                after_erasure=service.kb.forget_queries,
            ),
        ):
            app.state.service = service
            try:
                yield
            finally:
                del app.state.service

    app = service_app(
        title="Customer service",
        distribution="customer-service",
        description="Chat API: intents, knowledge-base retrieval, grounded answers with citations, hand-off.",
        settings=settings,
        resources=resources,
        ready=_ready,
        key_scope=KeyScope(
            tuple(key.get_secret_value() for key in settings.chat_api_keys),
            CHAT_ROUTES,
            CHAT_ONLY,
            name="chat",
        ),
    )
    expired = Counter(
        "customer_service_sessions_expired",
        "Sessions erased by the retention limit (CS_SESSION_RETENTION_DAYS).",
        registry=app.state.metrics,
    )
    for module in (chat, sessions, knowledge, analytics):
        app.include_router(module.router)
    return app


async def _ready(app: FastAPI) -> dict[str, str]:
    """The service's readiness; its database read runs in a thread, so a slow or locked database delays
    `/readyz` alone, not every request the event loop serves (`/healthz` among them).

    Raises:
        ModelNotReady: the lifespan has not built the service, or the database fails (503, not 500).
    """
    service: CustomerService | None = getattr(app.state, "service", None)
    if service is None:
        raise ModelNotReady("expected the service to be built by the lifespan; it is not")
    try:
        return await anyio.to_thread.run_sync(_checks, service)
    except SQLAlchemyError as exc:
        raise ModelNotReady(
            f"expected the database to answer; it failed: {type(exc).__name__}: {error_summary(exc)}"
        ) from exc


def _checks(service: CustomerService) -> dict[str, str]:
    """One status line per resource (blocking: reads the database)."""
    return {
        "database": service.db.engine.dialect.name,
        "knowledge": f"{service.kb.count()} entries, version {service.kb.version}",
        "retrieval": service.retriever.default_mode,
        "intents": _intents_state(service),
        "generator": service.generator,
    }


def _intents_state(service: CustomerService) -> str:
    if service.intents is None:
        return "none (retrieval only)"
    if service.intents.frozen_view_shared:
        return "trained model (its frozen view reads the retrieval embeddings)"
    return "trained model"
