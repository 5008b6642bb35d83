"""Pure-ASGI middleware that refuses request bodies above a byte bound with 413 problem+json."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from textcore.errors import PayloadTooLarge
from textcore.web.problems import send_problem

# After refusing, up to this many further bytes are read and discarded so the client, still sending, gets
# the 413 instead of a connection reset; beyond it the connection is simply closed.
DRAIN_BYTES = 1 << 20


class BodySizeLimit:
    """Reject HTTP requests whose body is larger than ``max_bytes``.

    A declared ``Content-Length`` above the bound is refused before any byte is read. Otherwise the body is
    read here, chunk by chunk, and held (at most ``max_bytes`` plus one chunk) until it is complete; the
    app then receives it unchanged. Applications behind this middleware never see an oversized body. The
    rest of a refused body is read and discarded, up to `DRAIN_BYTES`, then the connection is closed.

    Args:
        app: The ASGI application to protect.
        max_bytes: Largest accepted body, in bytes (at least 0).
        setting: The setting that sets ``max_bytes`` (e.g. ``FIN_MAX_BODY_BYTES``), named in the 413's
            detail for the operator who may raise it; None names none.

    Raises:
        ValueError: If ``max_bytes`` is negative.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, setting: str | None = None) -> None:
        if max_bytes < 0:
            raise ValueError(f"expected max_bytes >= 0, found {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes
        self.setting = setting

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            # A client waiting for "100 Continue" has sent nothing yet; reading would invite the body.
            if declared <= self.max_bytes + DRAIN_BYTES and not expects_continue(scope):
                await discard_body(receive)
            await self._refuse(scope, send, f"{declared} bytes declared")
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # client went away: let the app see the disconnect
                await self.app(scope, _replay([message], receive), send)
                return
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                if message.get("more_body", False):
                    await discard_body(receive)
                await self._refuse(scope, send, f"more than {self.max_bytes} bytes sent")
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _refuse(self, scope: Scope, send: Send, found: str) -> None:
        detail = f"expected a request body of at most {self.max_bytes} bytes, found {found}"
        if self.setting:
            detail += f" (the service's {self.setting} sets the bound)"
        await send_problem(scope, send, 413, PayloadTooLarge.title, detail, [(b"connection", b"close")])


async def refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    title: str,
    detail: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Answer an HTTP request that middleware refuses (a key, a host) with a problem document. Its body is
    read and dropped first (bounded), so a client still sending it gets the refusal rather than a connection
    reset; one waiting for "100 Continue" has sent nothing yet."""
    if not expects_continue(scope):
        await discard_body(receive)
    await send_problem(scope, send, status, title, detail, headers)


async def discard_body(receive: Receive) -> None:
    """Read and drop the rest of a refused request's body, up to `DRAIN_BYTES`."""
    drained = 0
    while drained <= DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        drained += len(message.get("body", b""))


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    # Malformed values are left to the streamed count, which still bounds the body.
    return int(value) if value is not None and value.isdigit() else None


def expects_continue(scope: Scope) -> bool:
    """Whether the client waits for "100 Continue" before sending its body (reading it would invite it)."""
    return (_header(scope, b"expect") or b"").lower() == b"100-continue"


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """Return a ``receive`` that yields ``messages`` first, then defers to the server's ``receive``."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
