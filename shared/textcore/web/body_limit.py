"""Pure-ASGI middleware that bounds request bodies: one above a byte bound is refused with 413 problem+json,
one not wholly received within a deadline is answered 408 problem+json and its connection closed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from textcore.errors import PayloadTooLarge
from textcore.web.problems import send_problem

# After refusing, up to this many further bytes are read and discarded, for at most this many seconds, so
# the client, still sending, gets the refusal instead of a connection reset; beyond either the connection
# is simply closed (a client trickling the rest of a refused body holds it no longer).
DRAIN_BYTES = 1 << 20
DRAIN_SECONDS = 5.0
REQUEST_TIMEOUT = "Request Timeout"


class BodySizeLimit:
    """Reject HTTP requests whose body is larger than ``max_bytes`` or slower to arrive than ``timeout``.

    A declared ``Content-Length`` above the bound is refused before any byte is read. Otherwise the body is
    read here, chunk by chunk, and held (at most ``max_bytes`` plus one chunk) until it is complete; the
    app then receives it unchanged. Applications behind this middleware never see an oversized body. The
    rest of a refused body is read and discarded, up to `DRAIN_BYTES` and `DRAIN_SECONDS`, then the
    connection is closed.

    With a ``timeout``, the whole body must arrive within that many seconds of the request reaching this
    middleware (once the server has read its headers; a client waiting for "100 Continue" is sent it
    then): a client that
    sends it slower, or stops half way, is answered 408 and its connection closed, so it cannot hold a
    connection and a server task indefinitely. The app is not called before the body is complete, so a slow
    body never holds a worker or a capacity permit. A request without a body has it at once; once the body
    is in, the deadline is over: the response may take as long as it takes (a stream of events).

    Args:
        app: The ASGI application to protect.
        max_bytes: Largest accepted body, in bytes (at least 0).
        setting: The setting that sets ``max_bytes`` (e.g. ``FIN_MAX_BODY_BYTES``), named in the 413's
            detail for the operator who may raise it; None names none.
        timeout: Seconds a client may take to send the whole body (above 0); None sets no deadline.
        timeout_setting: The setting that sets ``timeout`` (e.g. ``FIN_BODY_TIMEOUT``), named in the 408's
            detail; None names none.

    Raises:
        ValueError: If ``max_bytes`` is negative or ``timeout`` not above 0.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        setting: str | None = None,
        *,
        timeout: float | None = None,
        timeout_setting: str | None = None,
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"expected max_bytes >= 0, found {max_bytes}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"expected a timeout above 0 seconds, found {timeout}")
        self.app = app
        self.max_bytes = max_bytes
        self.setting = setting
        self.timeout = timeout
        self.timeout_setting = timeout_setting

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            # A client waiting for "100 Continue" has sent nothing yet; reading would invite the body.
            if declared <= self.max_bytes + DRAIN_BYTES and not expects_continue(scope):
                await discard_body(receive, self._drain_seconds)
            await self._refuse(scope, send, f"{declared} bytes declared")
            return
        body = _Body()
        message: Message | None = None
        # inf: no deadline (anyio's own "never"), so one code path reads the body either way.
        with anyio.move_on_after(float("inf") if self.timeout is None else self.timeout):
            message = await self._read(receive, body)
        if message is None:
            await self._too_slow(scope, send, body.size, declared)
            return
        if body.size > self.max_bytes:
            if message.get("more_body", False):
                await discard_body(receive, self._drain_seconds)
            await self._refuse(scope, send, f"more than {self.max_bytes} bytes sent")
            return
        await self.app(scope, _replay([message], receive), send)

    async def _read(self, receive: Receive, body: _Body) -> Message:
        """Read the body into ``body`` until it is complete, over ``max_bytes``, or ended by the client.
        Returns the message for the app (the whole body as one, or the disconnect) or, over the bound, the
        last one read."""
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away: let the app see the disconnect
                return message
            chunk: bytes = message.get("body", b"")
            body.size += len(chunk)
            if body.size > self.max_bytes:
                return message
            body.chunks.append(chunk)
            if not message.get("more_body", False):
                return {"type": "http.request", "body": b"".join(body.chunks), "more_body": False}

    @property
    def _drain_seconds(self) -> float:
        return DRAIN_SECONDS if self.timeout is None else min(DRAIN_SECONDS, self.timeout)

    async def _refuse(self, scope: Scope, send: Send, found: str) -> None:
        detail = f"expected a request body of at most {self.max_bytes} bytes, found {found}"
        if self.setting:
            detail += f" (the service's {self.setting} sets the bound)"
        await send_problem(scope, send, 413, PayloadTooLarge.title, detail, [(b"connection", b"close")])

    async def _too_slow(self, scope: Scope, send: Send, size: int, declared: int | None) -> None:
        of = "" if declared is None else f" of the {declared} declared"
        detail = (
            f"expected the whole request body within {self.timeout:g} seconds, found {size} bytes{of} by then"
        )
        if self.timeout_setting:
            detail += f" (the service's {self.timeout_setting} sets the deadline)"
        await send_problem(scope, send, 408, REQUEST_TIMEOUT, detail, [(b"connection", b"close")])


@dataclass
class _Body:
    """The chunks of one request body read so far, and their size in bytes."""

    chunks: list[bytes] = field(default_factory=list)
    size: int = 0


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


async def discard_body(receive: Receive, seconds: float = DRAIN_SECONDS) -> None:
    """Read and drop the rest of a refused request's body, up to `DRAIN_BYTES` and for at most ``seconds``."""
    drained = 0
    with anyio.move_on_after(seconds):
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
