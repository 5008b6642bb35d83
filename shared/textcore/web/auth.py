"""Pure-ASGI middleware that admits only requests carrying one of the service's API keys.

A key travels as ``Authorization: Bearer KEY`` (what OpenAPI clients and Prometheus scrapers send) or as
``X-API-Key: KEY``. Health probes and the API documentation stay open (`OPEN_PATHS`): an orchestrator's
liveness check carries no key, and the schema describes the API without exposing any of its data. Every
other path, ``/metrics`` included, answers 401 problem+json with a ``WWW-Authenticate: Bearer`` challenge
when the key is missing or wrong; a websocket without one is closed (1008) before its handshake. Keys are
compared by their SHA-256 digests in constant time, so neither a key's content nor its length leaks through
the response time. An open path is matched exactly as the router matches it (below a proxy's ``root_path``
too): another spelling (a trailing slash, another case, a dot segment) is not open, and the router would not
take it to the open route either.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from starlette._utils import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from textcore.errors import Unauthorized
from textcore.web.body_limit import discard_body, expects_continue
from textcore.web.problems import PROBLEM_MEDIA_TYPE, problem_body

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


class ApiKeyAuth:
    """Refuse HTTP requests that carry none of ``keys`` with 401, except on `OPEN_PATHS`.

    Args:
        app: The ASGI application to protect.
        keys: The accepted keys (at least one).
        realm: Named in the ``WWW-Authenticate`` challenge.

    Raises:
        ValueError: If no key is given.
    """

    def __init__(self, app: ASGIApp, keys: Iterable[str], realm: str = "api") -> None:
        self.app = app
        self._digests = tuple(_digest(key.encode()) for key in keys)
        if not self._digests:
            raise ValueError("expected at least one API key, found none")
        self._challenge = f'Bearer realm="{realm}"'.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        # The path as the router matches it: behind a proxy prefix (``root_path``, e.g. uvicorn --root-path
        # /api) the server's path carries the prefix, which the router strips, and so must this check.
        if scope["type"] not in ("http", "websocket") or get_route_path(scope) in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        presented = _presented_key(scope)
        if presented is not None and self._accepts(presented):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":  # refused before the handshake is accepted (policy violation)
            await send({"type": "websocket.close", "code": 1008})
            return
        # The body of a refused request is read and dropped (bounded), so a client still sending it gets the
        # 401 rather than a connection reset; one waiting for "100 Continue" has sent nothing yet.
        if not expects_continue(scope):
            await discard_body(receive)
        found = "no key" if presented is None else "a key it does not know"
        detail = f"expected an API key as 'Authorization: Bearer KEY' or 'X-API-Key: KEY', found {found}"
        payload = json.dumps(problem_body(401, Unauthorized.title, detail, str(scope["path"]))).encode()
        headers = [
            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
            (b"content-length", str(len(payload)).encode()),
            (b"www-authenticate", self._challenge),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def _accepts(self, presented: bytes) -> bool:
        digest = _digest(presented)
        # Every key is compared, whichever matches, so the time taken says nothing about which one did.
        matches = [hmac.compare_digest(digest, known) for known in self._digests]
        return any(matches)


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def _presented_key(scope: Scope) -> bytes | None:
    """The key the request carries: a Bearer credential, else an X-API-Key header; None when neither."""
    headers = dict(scope.get("headers", []))
    authorization = bytes(headers.get(b"authorization", b""))
    scheme, _, credential = authorization.strip().partition(b" ")
    if scheme.lower() == b"bearer" and credential.strip():
        return credential.strip()
    api_key = bytes(headers.get(b"x-api-key", b"")).strip()
    return api_key or None


def document_api_keys(app: FastAPI) -> None:
    """Declare the API keys in `app`'s OpenAPI document, so that its docs page can send one ("Authorize").

    Every operation requires a key, as a Bearer credential or an X-API-Key header, except those on
    `OPEN_PATHS`.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemes = {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
            schema.setdefault("components", {})["securitySchemes"] = schemes
            schema["security"] = [{"bearer": []}, {"apiKeyHeader": []}]
            for path, operations in schema.get("paths", {}).items():
                if path in OPEN_PATHS:
                    for operation in operations.values():
                        operation["security"] = []
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
