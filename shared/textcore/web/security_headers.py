"""Pure-ASGI middleware that sets the security headers an API's responses should carry.

Every HTTP response (errors, 401s and 413s of the other middleware included) gets:

- ``X-Content-Type-Options: nosniff``: a browser never reads a JSON body (which may echo a customer's text)
  as HTML or script;
- ``Cache-Control: no-store`` unless the route set its own: replies carry personal data (chat turns,
  sessions), which no shared or browser cache may keep;
- ``X-Frame-Options: DENY`` and ``Content-Security-Policy: frame-ancestors 'none'`` (unless the route set its
  own policy): no other site may frame a page of the service (the API docs) to trick a user into clicking.
  The API docs pages set their own policy, which forbids framing too (`textcore.web.api_docs`).

``Strict-Transport-Security`` is left to the TLS-terminating proxy, which alone knows the scheme clients see.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Always set, replacing any the app set.
FORCED = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}
# Set when the app set none.
DEFAULTS = {"Cache-Control": "no-store", "Content-Security-Policy": "frame-ancestors 'none'"}


def add_security_headers(headers: MutableHeaders) -> None:
    """Set `FORCED` on `headers`, and each of `DEFAULTS` they lack."""
    for name, value in FORCED.items():
        headers[name] = value
    for name, value in DEFAULTS.items():
        headers.setdefault(name, value)


class SecurityHeaders:
    """Set the security headers (`FORCED`, `DEFAULTS`) on every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                add_security_headers(MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, send_with_headers)
