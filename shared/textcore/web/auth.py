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

A service may also give keys of a narrower scope (`KeyScope`): such a key is accepted on the routes the scope
names, by method and path template as the router declares them, and answered 403 problem+json (never 401:
the key is known) everywhere else but `OPEN_PATHS`; a websocket is closed (1008). The customer service's
chat keys, which a browser widget ships in its page, are one (``CS_CHAT_API_KEYS``). A presented key is
compared with every key of either kind, whichever matches, as above. The API documentation says which
operations such a key may call (`document_api_keys`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from fastapi import FastAPI
from starlette._utils import get_route_path
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from textcore.errors import Unauthorized
from textcore.web.api_docs import ASSET_PATHS, PAGE_PATHS
from textcore.web.body_limit import refuse

# The probes, the OpenAPI document, and the docs pages with the files they load (`textcore.web.api_docs`).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"}) | PAGE_PATHS | ASSET_PATHS
FORBIDDEN = "Forbidden"  # the title of a scoped key's refusal


@dataclass(frozen=True)
class KeyScope:
    """Keys that may call only some routes.

    Attributes:
        keys: the scoped keys (none of them also a key of full access).
        routes: what they may call, as ``(method, path template)`` pairs the way the routes are declared,
            e.g. ``("POST", "/v1/chat")`` or ``("GET", "/v1/items/{item_id}")``; a GET allows HEAD too.
        detail: the 403's detail for any other route, e.g. "this key may call the chat endpoints only".
        name: what the API documentation calls such a key ("chat": "a chat key may call this operation").
    """

    keys: tuple[str, ...]
    routes: tuple[tuple[str, str], ...]
    detail: str
    name: str = "scoped"

    def allows(self, method: str, path: str) -> bool:
        """Whether the scope names this operation, given as the OpenAPI document lists it: its method (any
        case) and its path template without converters ("/v1/items/{item_id}")."""
        method = method.upper()
        return any(
            (method == allowed.upper() or (allowed.upper() == "GET" and method == "HEAD"))
            and compile_path(template)[1] == path
            for allowed, template in self.routes
        )

    def listed(self) -> str:
        """The operations the scope names, for people: "POST /v1/chat and POST /v1/feedback"."""
        named = [f"{method.upper()} {compile_path(template)[1]}" for method, template in self.routes]
        return named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"


class _Grant(Enum):
    ALL = "all"
    SCOPED = "scoped"


class ApiKeyAuth:
    """Refuse HTTP requests that carry none of ``keys`` with 401, except on `OPEN_PATHS`.

    Args:
        app: The ASGI application to protect.
        keys: The accepted keys of full access (at least one).
        realm: Named in the ``WWW-Authenticate`` challenge.
        scope: Keys accepted on some routes only (403 on the others), if any.

    Raises:
        ValueError: If no key of full access is given, or a key is both of full access and scoped.
    """

    def __init__(
        self, app: ASGIApp, keys: Iterable[str], realm: str = "api", scope: KeyScope | None = None
    ) -> None:
        self.app = app
        self._digests = tuple(_digest(key.encode()) for key in keys)
        if not self._digests:
            raise ValueError("expected at least one API key, found none")
        self._challenge = f'Bearer realm="{realm}"'.encode()
        self._scoped = tuple(_digest(key.encode()) for key in scope.keys) if scope is not None else ()
        if set(self._scoped) & set(self._digests):
            raise ValueError("expected scoped keys apart from the keys of full access; found one in both")
        self._routes: tuple[tuple[str, re.Pattern[str]], ...] = ()
        self._forbidden = ""
        if scope is not None:
            self._routes = tuple((method.upper(), compile_path(path)[0]) for method, path in scope.routes)
            self._forbidden = scope.detail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        # The path as the router matches it: behind a proxy prefix (``root_path``, e.g. uvicorn --root-path
        # /api) the server's path carries the prefix, which the router strips, and so must this check.
        if scope["type"] not in ("http", "websocket") or get_route_path(scope) in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        presented = _presented_key(scope)
        grant = self._grant(presented) if presented is not None else None
        if grant is _Grant.ALL or (grant is _Grant.SCOPED and self._in_scope(scope)):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":  # refused before the handshake is accepted (policy violation)
            await send({"type": "websocket.close", "code": 1008})
            return
        if grant is _Grant.SCOPED:  # a known key, on a route beyond its scope
            await refuse(scope, receive, send, 403, FORBIDDEN, self._forbidden, [])
            return
        found = "no key" if presented is None else "a key it does not know"
        detail = f"expected an API key as 'Authorization: Bearer KEY' or 'X-API-Key: KEY', found {found}"
        challenge = [(b"www-authenticate", self._challenge)]
        await refuse(scope, receive, send, 401, Unauthorized.title, detail, challenge)

    def _grant(self, presented: bytes) -> _Grant | None:
        digest = _digest(presented)
        # Every key is compared, whichever matches, so the time taken says nothing about which one did.
        full = [hmac.compare_digest(digest, known) for known in self._digests]
        scoped = [hmac.compare_digest(digest, known) for known in self._scoped]
        if any(full):
            return _Grant.ALL
        return _Grant.SCOPED if any(scoped) else None

    def _in_scope(self, scope: Scope) -> bool:
        """Whether the request is one of the scoped keys' routes (matched as the router matches it)."""
        if scope["type"] != "http":
            return False
        method, path = scope["method"], get_route_path(scope)
        return any(
            (method == allowed or (allowed == "GET" and method == "HEAD")) and pattern.match(path) is not None
            for allowed, pattern in self._routes
        )


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
    `OPEN_PATHS`. When the app's `ApiKeyAuth` takes keys of a narrower scope (`KeyScope`), the document says
    which operations those may call, for whoever builds a client with one (a chat widget): the API's
    description names them, each of them says so in its own description ("**API keys:** a chat key may
    call this operation, ...") and lists the scope in ``x-api-key-scopes`` (``["chat"]``); every other
    operation needs a key of full access.
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
            if (scope := _scope_of(app)) is not None:
                _document_scope(schema, scope)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _scope_of(app: FastAPI) -> KeyScope | None:
    """The narrower keys' scope the app's `ApiKeyAuth` was added with, if any."""
    for middleware in app.user_middleware:
        added: object = middleware.cls  # typed as a factory, which a class is
        if added is ApiKeyAuth:
            scope = middleware.kwargs.get("scope")
            return scope if isinstance(scope, KeyScope) and scope.keys else None
    return None


def _document_scope(schema: dict[str, Any], scope: KeyScope) -> None:
    """Mark the operations `scope` allows in an OpenAPI document, and name them in its description."""
    info = schema.setdefault("info", {})
    whole = (
        f"**API keys:** a {scope.name} key may call {scope.listed()} only; every other operation needs a key "
        f"of full access (a {scope.name} key is answered 403)."
    )
    info["description"] = "\n\n".join(filter(None, [info.get("description", ""), whole]))
    line = f"**API keys:** a {scope.name} key may call this operation, as may a key of full access."
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if path in OPEN_PATHS or not isinstance(operation, dict) or not scope.allows(method, path):
                continue
            operation["description"] = "\n\n".join(filter(None, [operation.get("description", ""), line]))
            operation["x-api-key-scopes"] = [scope.name]
