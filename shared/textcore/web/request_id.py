"""Pure-ASGI middleware that gives every request an id and returns it in the ``X-Request-ID`` header.

A caller's own ``X-Request-ID`` (a gateway's, a front end's) is kept when it is a plausible id: 1 to 128
characters of letters, digits and ``._:-``; anything else is replaced by a fresh one, so a log line never
carries what a client chose to inject. The id is on every response, errors included (the 500 handler adds it
to the response it builds outside this middleware, and names it in its log line and in the problem's detail),
so a customer or front end quoting it leads support to the one log line about their request. While the
request is served, `textcore.logs.request_id` holds the id, so JSON log lines name it.
"""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from textcore import logs

_PLAUSIBLE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


class RequestId:
    """Give each HTTP request an id (the caller's when plausible) and set it on the response.

    The id is kept in the request's state (`request_id_of`).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(logs.REQUEST_ID_HEADER.lower().encode())
        request_id = given.decode() if given and _PLAUSIBLE.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                MutableHeaders(scope=message)[logs.REQUEST_ID_HEADER] = request_id
            await send(message)

        token = logs.request_id.set(request_id)  # log records of this request name it (`textcore.logs`)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logs.request_id.reset(token)


def request_id_of(request: Request) -> str | None:
    """The id `RequestId` gave `request`; None for a request that did not pass through it."""
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None
